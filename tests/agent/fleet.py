"""A real fleet server (`python -m edgewise server`) and real agent processes, on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edgewise.core.wire import API_PREFIX
from tests.services import free_port, wait_for_port

ROOT = Path(__file__).parents[2]


def edgewise(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "edgewise", *args], cwd=ROOT, env=env, **kwargs)


def wait_until(check: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as error:
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@dataclass
class FleetServer:
    root: Path
    store_dir: Path
    trust: list[Path]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    token: str = ""

    @property
    def db(self) -> str:
        return f"sqlite:///{self.root / 'fleet.db'}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not self.token:
            made = subprocess.run([sys.executable, "-m", "edgewise", "server", "token", "create", "--scope", "admin",
                                   "--db", self.db], cwd=ROOT, capture_output=True, text=True, check=True)
            self.token = made.stdout.strip().splitlines()[-1]
        trust = [arg for key in self.trust for arg in ("--trust", str(key))]
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = edgewise("server", "--db", self.db, "--store", str(self.store_dir), "--port", str(self.port),
                                "--offline-after", "5", "--log-level", "warning", *trust, stdout=log, stderr=log)
        wait_for_port(self.port, 60, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + API_PREFIX, headers={"Authorization": f"Bearer {self.token}"},
                            timeout=30)

    def enrollment_token(self) -> str:
        with self.api() as api:
            response = api.post("/enrollment-tokens", json={})
            response.raise_for_status()
            return str(response.json()["token"])

    def deploy(self, ref: str, device_id: str, allow_downgrade: bool = False) -> str:
        with self.api() as api:
            response = api.post("/deployments", json={"bundle": ref, "selector": {"ids": [device_id]},
                                                      "strategy": {"allow_downgrade": allow_downgrade}})
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

    def device(self, device_id: str) -> dict[str, Any]:
        with self.api() as api:
            response = api.get(f"/devices/{device_id}")
            response.raise_for_status()
            return dict(response.json())

    def events(self, device_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        before: int | None = None
        with self.api() as api:
            while True:
                params: dict[str, Any] = {"device_id": device_id, "limit": 1000}
                if before is not None:
                    params["before_id"] = before
                page = api.get("/events", params=params).json()
                found += page["items"]
                before = page["next_before_id"]
                if before is None:
                    return found


@dataclass
class Agent:
    data_dir: Path
    config: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, crash_in_state: str | None = None) -> None:
        env = dict(os.environ)
        env.pop("EDGEWISE_AGENT_CRASH_IN_STATE", None)
        if crash_in_state:
            env["EDGEWISE_AGENT_CRASH_IN_STATE"] = crash_in_state
        log = open(self.data_dir / "agent.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = edgewise("agent", "run", "--config", str(self.config), "-v", env=env, stdout=log, stderr=log)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def status(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "status.json").read_text()))

    def update_record(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "update.json").read_text()))

    def log(self) -> str:
        path = self.data_dir / "agent.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
