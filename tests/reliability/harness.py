"""A small fleet of real agent processes around a real server, and the bookkeeping the scenarios assert on.

Built on the agent tests' process fixtures (`tests.agent.fleet`) and the demo's agent.toml template
and operator client (`edgewise.demo.fleet_stage`), so the suite exercises what users run.
"""

from __future__ import annotations

import concurrent.futures
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgewise.demo.fleet_stage import OperatorClient, agent_toml
from tests.agent.fleet import ROOT, Agent, FleetServer, wait_until

GOOD_VERSIONS = ("v1", "v2", "scratch")
FINISHED = ("completed", "halted", "rolled_back")


def kill_server(server: FleetServer) -> None:
    """SIGKILL: no shutdown handler, no flush; whatever was not committed is gone."""
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(15)
    server.process = None


def restart_server(server: FleetServer) -> None:
    server.start()  # the same port, database, store and operator token


def operator(server: FleetServer) -> OperatorClient:
    return OperatorClient(server.url, server.token)


def enrollment_token(server: FleetServer, uses: int) -> str:
    made = subprocess.run([sys.executable, "-m", "edgewise", "server", "enroll-token", "create", "--uses", str(uses),
                           "--db", server.db], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    return made.stdout.strip().splitlines()[-1]


def corrupt_archive(archive: Path) -> None:
    """Flip bytes inside the model file of a packed bundle, keeping its size (the server checks only size)."""
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("model.onnx"))
    with open(archive, "r+b") as handle:
        handle.seek(member.offset_data + member.size // 2)
        chunk = handle.read(16)
        handle.seek(member.offset_data + member.size // 2)
        handle.write(bytes(b ^ 0xFF for b in chunk))


@dataclass
class Device:
    name: str
    device_id: str
    agent: Agent
    settings: dict[str, Any] = field(default_factory=dict)

    def write_config(self, server_url: str, **settings: Any) -> None:
        """The demo's agent.toml, made small and quick, with the device pinned to the publisher key."""
        self.settings = {**self.settings, **settings}
        s = self.settings
        text = agent_toml(self.agent.data_dir, server_url, seed=s["seed"], fps=s.get("fps", 10.0))
        text = f'trusted_keys = ["{s["trusted"]}"]\nrequest_timeout_s = 3.0\n' + text
        text = text.replace("[source]\n", "[source]\nwidth = 64\nheight = 48\n")
        text = text.replace("sync_interval_s = 1.0", f"sync_interval_s = {s.get('sync_interval_s', 0.5)}")
        text = text.replace("long_poll_s = 5.0", "long_poll_s = 2.0")
        text = text.replace("heartbeat_interval_s = 2.0", "heartbeat_interval_s = 1.0")
        text = text.replace("telemetry_interval_s = 3.0", f"telemetry_interval_s = {s.get('telemetry_s', 2.0)}")
        text = text.replace("window_s = 2.0", "window_s = 0.5")
        text = text.replace("max_latency_ms = 250.0", f"max_latency_ms = {s.get('max_latency_ms', 60.0)}")
        if "outbox" in s:
            text += "\n[outbox]\n" + "".join(f"{k} = {v}\n" for k, v in s["outbox"].items())
        self.agent.config.write_text(text)

    @property
    def outbox_path(self) -> Path:
        return self.agent.data_dir / "outbox.sqlite3"

    def serving(self, versions: tuple[str, ...] = GOOD_VERSIONS) -> bool:
        """A working model: the agent runs, its current slot is a good version and its health is ok."""
        if self.agent.process is None or self.agent.process.poll() is not None:
            return False
        try:
            status = self.agent.status()
        except (OSError, ValueError):
            return False
        current = status.get("current_bundle") or {}
        return (current.get("version") in versions and status["health"]["status"] == "ok"
                and status["update"]["state"] in ("idle", "failed"))

    def frames(self) -> int:
        return int(self.agent.status()["extra"]["frames"])

    def update_record(self) -> dict[str, Any]:
        path = self.agent.data_dir / "update.json"
        return self.agent.update_record() if path.exists() else {}


def enroll_devices(server: FleetServer, root: Path, count: int, trusted: str, prefix: str,
                   **settings: Any) -> list[Device]:
    """Enroll `count` devices with one multi-use token (real `edgewise agent enroll` processes, in parallel)."""
    token = enrollment_token(server, count)

    def enroll(index: int) -> Device:
        name = f"{prefix}-{index + 1}"
        data_dir = root / name
        done = subprocess.run([sys.executable, "-m", "edgewise", "agent", "enroll", "--server", server.url, "--token",
                               token, "--data-dir", str(data_dir), "--name", name],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        device_id = done.stdout.split("enrolled as ")[1].split(";")[0]
        device = Device(name, device_id, Agent(data_dir, root / f"{name}.toml"))
        device.write_config(server.url, seed=index + 1, trusted=trusted, **settings)
        return device

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(enroll, range(count)))


def start_all(devices: list[Device], crash_in_state: dict[str, str] | None = None) -> None:
    for device in devices:
        device.agent.start((crash_in_state or {}).get(device.name))


def stop_all(devices: list[Device]) -> None:
    for device in devices:
        device.agent.stop()


def deploy(server: FleetServer, ref: str, devices: list[Device], **strategy: Any) -> str:
    strategy.setdefault("name", "all-at-once")
    with server.api() as api:
        response = api.post("/deployments", json={"bundle": ref, "selector": {"ids": [d.device_id for d in devices]},
                                                   "strategy": strategy})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def deployment(server: FleetServer, deployment_id: str) -> dict[str, Any]:
    with server.api() as api:
        response = api.get(f"/deployments/{deployment_id}")
        response.raise_for_status()
        return dict(response.json())


def wait_finished(server: FleetServer, deployment_id: str, timeout_s: float = 90) -> dict[str, Any]:
    found = wait_until(lambda: (d := deployment(server, deployment_id))["status"] in FINISHED and d,
                       timeout_s, f"deployment {deployment_id} to finish")
    return dict(found)


def wait_serving(devices: list[Device], versions: tuple[str, ...], timeout_s: float = 60) -> None:
    try:
        wait_until(lambda: all(d.serving(versions) for d in devices), timeout_s, f"devices serving {versions}")
    except AssertionError:
        logs = "\n".join(f"--- {d.name}: {d.agent.log()[-1500:]}" for d in devices if not d.serving(versions))
        raise AssertionError(f"not every device serves {versions}:\n{logs}") from None


def healthy(devices: list[Device]) -> int:
    """Devices on a working model that is still inferring (its frame count moves)."""
    before = {d.name: d.frames() if d.serving() else -1 for d in devices}
    time.sleep(1.2)
    return sum(1 for d in devices if before[d.name] >= 0 and d.serving() and d.frames() != before[d.name])


# --- event accounting ---------------------------------------------------------------------------


@dataclass
class OutboxView:
    """What a device's outbox says, read straight from its SQLite file (WAL: safe while the agent runs)."""

    high_seq: int  # the last seq ever handed out (AUTOINCREMENT never reuses one)
    queued: set[int]  # not yet acknowledged
    dropped: dict[str, int]
    queued_ranks: list[int]
    queued_bytes: int
    alarm_seqs: list[int]


def read_outbox(device: Device) -> OutboxView:
    with sqlite3.connect(f"file:{device.outbox_path}?mode=ro", uri=True, timeout=10) as db:
        high = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'items'").fetchone()
        rows = db.execute("SELECT seq, rank, size FROM items").fetchall()
        dropped = dict(db.execute("SELECT priority, count FROM dropped").fetchall())
    return OutboxView(int(high[0]) if high else 0, {seq for seq, _, _ in rows}, dropped, [rank for _, rank, _ in rows],
                      sum(size for _, _, size in rows), [seq for seq, rank, _ in rows if rank == 0])


def server_seqs(server: FleetServer, device: Device) -> list[int]:
    """Every seq the server stored for the device: events and telemetry share one sequence."""
    with server.api() as api:
        telemetry = api.get("/telemetry", params={"device_id": device.device_id, "limit": 5000}).json()
    return [e["seq"] for e in server.events(device.device_id)] + [t["seq"] for t in telemetry]


@dataclass
class Ledger:
    """Per device, the seq high-water mark when a scenario began; `settle` checks what came after."""

    server: FleetServer
    devices: list[Device]
    start: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.start = {d.name: read_outbox(d).high_seq for d in self.devices}

    def check(self, allow_dropped: bool = False) -> dict[str, int]:
        """Assert: every acknowledged item of this scenario is on the server, none twice. Returns the counts.

        The outbox is read before the server, so an item missing from the outbox was acknowledged
        before the server was asked, and must be there."""
        produced = stored = duplicated = lost = queued = 0
        for device in self.devices:
            view = read_outbox(device)
            seqs = [s for s in server_seqs(self.server, device) if s > self.start[device.name]]
            newest = read_outbox(device).high_seq  # items made (and maybe acked) while the server was asked
            assert all(s <= newest for s in seqs), f"{device.name}: server holds seqs the device never made"
            window = set(range(self.start[device.name] + 1, view.high_seq + 1))
            counts = Counter(s for s in seqs if s in window)
            produced += len(window)
            stored += len(counts)
            duplicated += sum(n - 1 for n in counts.values())
            missing = window - set(counts) - view.queued
            queued += len((window & view.queued) - set(counts))
            lost += len(missing)
            if not allow_dropped:
                assert not missing, f"{device.name}: acknowledged but not stored: {sorted(missing)[:20]}"
        assert duplicated == 0, f"{duplicated} item(s) stored twice"
        return {"produced": produced, "stored": stored, "duplicated": duplicated, "queued": queued, "missing": lost}

    def wait_delivered(self, timeout_s: float = 60) -> None:
        """Until every item made so far (per the outbox right now) is on the server."""
        marks = {d.name: read_outbox(d).high_seq for d in self.devices}

        def delivered() -> bool:
            for device in self.devices:
                have = {s for s in server_seqs(self.server, device) if s > self.start[device.name]}
                if not set(range(self.start[device.name] + 1, marks[device.name] + 1)) <= have:
                    return False
            return True

        wait_until(delivered, timeout_s, "every queued item to reach the server")
