"""Fleet fixtures: a real server (uvicorn on a free loopback port) over SQLite or PostgreSQL, a
local bundle store with signed bundles, and a minimal device client that signs like the agent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgewise.core.auth import signed_headers
from edgewise.core.bundle import create_bundle, sign_bundle
from edgewise.core.manifest import InputSpec, Manifest, Variant
from edgewise.core.signing import PrivateKey
from edgewise.core.wire import API_PREFIX
from edgewise.fleet.auth import create_operator_token
from edgewise.fleet.context import ServerContext
from edgewise.fleet.settings import ServerSettings
from tests.services import free_port


@pytest.fixture(scope="session")
def publisher_key() -> PrivateKey:
    return PrivateKey.generate()


@dataclass
class BundleFactory:
    root: Path
    store: Any
    key: PrivateKey | None

    def publish(self, name: str = "detector", version: str = "1.0.0", sign: bool = True,
                key: PrivateKey | None = None) -> Any:
        model = self.root / f"src-{name}-{version}.onnx"
        model.write_bytes(f"fake model {name} {version}".encode() * 50)
        manifest = Manifest(name=name, version=version, labels=["a", "b"],
                            input=InputSpec(shape=[1, 3, 32, 32], resize=[32, 32]),
                            variants=[Variant(name="cpu", file="model.onnx")])
        bundle_dir = self.root / f"bundle-{name}-{version}"
        create_bundle(bundle_dir, manifest, {"model.onnx": model})
        signer = key or self.key
        if sign and signer is not None:
            sign_bundle(bundle_dir, signer)
        return self.store.publish(bundle_dir)


@pytest.fixture
def bundles(tmp_path: Path, publisher_key: PrivateKey) -> BundleFactory:
    from edgewise.registry import open_store

    (tmp_path / "bundles").mkdir()
    return BundleFactory(tmp_path / "bundles", open_store(tmp_path / "store"), publisher_key)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fleet.db'}"


@dataclass
class RunningServer:
    url: str
    ctx: ServerContext
    admin_token: str
    server: Any
    thread: threading.Thread
    clients: list[httpx.Client] = field(default_factory=list)

    def operator(self, scope: str = "admin") -> httpx.Client:
        token = self.admin_token if scope == "admin" else create_operator_token(self.ctx.db, scope, f"test-{scope}")
        client = httpx.Client(base_url=self.url + API_PREFIX, headers={"Authorization": f"Bearer {token}"},
                              timeout=30)
        self.clients.append(client)
        return client

    def enrollment_token(self, **options: Any) -> str:
        response = self.operator().post("/enrollment-tokens", json=options)
        response.raise_for_status()
        return str(response.json()["token"])

    def device(self, name: str = "cam", **enroll_options: Any) -> DeviceClient:
        device = DeviceClient(self.url)
        self.clients.append(device.http)
        device.enroll(self.enrollment_token(**enroll_options), name)
        return device

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(15)


def start_server(settings: ServerSettings) -> RunningServer:
    import uvicorn

    from edgewise.fleet.app import create_app

    app = create_app(settings)
    ctx: ServerContext = app.state.ctx
    config = uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fleet server did not start")
        time.sleep(0.05)
    token = create_operator_token(ctx.db, "admin", "test-admin")
    return RunningServer(f"http://127.0.0.1:{settings.port}", ctx, token, server, thread)


def make_settings(db_url: str, tmp_path: Path, publisher_key: PrivateKey | None, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {"tick_s": 0.2, "device_process": False, **overrides}
    return ServerSettings(
        db_url=db_url, store_url=str(tmp_path / "store"), cache_dir=tmp_path / "cache", port=free_port(),
        trusted_keys=[publisher_key.public.b64] if publisher_key else [], **values,
    )


@pytest.fixture
def fleet(db_url: str, tmp_path: Path, publisher_key: PrivateKey) -> Iterator[RunningServer]:
    """The server as `edgewise server` runs it: device requests in a device process."""
    running = start_server(make_settings(db_url, tmp_path, publisher_key, device_process=True))
    yield running
    running.stop()


@pytest.fixture
def sqlite_fleet(sqlite_url: str, tmp_path: Path, publisher_key: PrivateKey) -> Iterator[RunningServer]:
    running = start_server(make_settings(sqlite_url, tmp_path, publisher_key))
    yield running
    running.stop()


class DeviceClient:
    """What the agent does on the wire, in a few lines: enroll, then sign every request."""

    def __init__(self, url: str, key: PrivateKey | None = None) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.key = key or PrivateKey.generate()
        self.device_id = ""
        self.enrollment: dict[str, Any] = {}

    def enroll(self, token: str, name: str = "cam", **extra: Any) -> httpx.Response:
        body = {"token": token, "public_key": self.key.public.b64, "name": name, **extra}
        response = self.http.post(f"{API_PREFIX}/enroll", json=body)
        if response.status_code == 200:
            self.enrollment = response.json()
            self.device_id = self.enrollment["device_id"]
        return response

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                as_device: str | None = None) -> httpx.Response:
        content = b"" if body is None else json.dumps(body).encode()
        full = API_PREFIX + path
        signed = signed_headers(as_device or self.device_id, self.key, method, full, content)
        all_headers = {**signed, **(headers or {})}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        return self.http.request(method, full, content=content, headers=all_headers)

    def report(self, current: Any = None, health: str = "ok", update_state: str = "idle",
               target_digest: str | None = None, deployment_id: str | None = None,
               update_error: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"agent_version": "0.1.0", "hardware": "x86-host",
                                "health": {"status": health},
                                "update": {"state": update_state, "target_digest": target_digest,
                                           "deployment_id": deployment_id}}
        if update_error is not None:
            body["update"]["error"] = update_error
        if current is not None:
            body["current_bundle"] = {"name": current.name, "version": current.version, "digest": current.digest}
        return self.request("PUT", "/device/state", body)

    def desired(self, etag: str | None = None, wait: float = 0) -> httpx.Response:
        path = "/device/desired" + (f"?wait={wait:g}" if wait else "")
        return self.request("GET", path, headers={"If-None-Match": etag} if etag else None)
