"""One real server for the whole suite, a shared three-device fleet, the bundles, and the result table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgewise.core.signing import PrivateKey
from tests.agent import models
from tests.agent.fleet import FleetServer
from tests.reliability.harness import Device, deploy, enroll_devices, start_all, stop_all, wait_finished, wait_serving

ROWS = pytest.StashKey[list[dict[str, object]]]()
HEADER = ("scenario", "produced", "stored", "duplicated", "queued", "dropped", "healthy/total", "deployment")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[ROWS] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    table = [HEADER] + [tuple(str(row.get(key, "")) for key in HEADER) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    terminalreporter.write_sep("=", "reliability: items (events + telemetry) per scenario, devices on a working model")
    for line in table:
        terminalreporter.write_line("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


class Table:
    def __init__(self, rows: list[dict[str, object]]) -> None:
        self.rows = rows

    def add(self, scenario: str, counts: dict[str, int], healthy: int, total: int, deployment: str = "-") -> None:
        row: dict[str, object] = {"scenario": scenario, "produced": counts.get("produced", 0),
                                  "stored": counts.get("stored", 0), "duplicated": counts.get("duplicated", 0),
                                  "queued": counts.get("queued", 0), "dropped": counts.get("dropped", 0),
                                  "healthy/total": f"{healthy}/{total}", "deployment": deployment}
        self.rows.append(row)
        print("reliability:", row)


@pytest.fixture(scope="session")
def table(request: pytest.FixtureRequest) -> Table:
    return Table(request.config.stash[ROWS])


@pytest.fixture(scope="session")
def publisher() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture(scope="session")
def stranger() -> PrivateKey:
    """A publisher the server knows but the devices do not pin: only the device stops its bundles."""
    return PrivateKey.generate()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, publisher: PrivateKey,
           stranger: PrivateKey) -> Iterator[FleetServer]:
    """A real `edgewise server` (SQLite, local store) with every test bundle published."""
    from edgewise.registry import open_store

    root = tmp_path_factory.mktemp("reliability")
    built = root / "built"
    built.mkdir()
    bundles = {
        "v1": (models.always(built / "v1.onnx", "scratch"), publisher),
        "v2": (models.always(built / "v2.onnx", "hole"), publisher),
        "corrupt": (models.classifier(built / "corrupt.onnx", seed=4), publisher),
        "bad-sig": (models.classifier(built / "bad-sig.onnx", seed=5), stranger),
        "crashes": (models.broken(built / "crashes.onnx"), publisher),
        "too-slow": (models.slow(built / "too-slow.onnx", side=1024, depth=12), publisher),
    }
    store = open_store(root / "store")
    for version, (model, key) in bundles.items():
        bundle_dir, _manifest = models.make_bundle(built, version, model, key)
        store.publish(bundle_dir)
    keys = []
    for name, key in (("publisher", publisher), ("stranger", stranger)):
        (root / f"{name}.pub").write_text(key.public.b64 + "\n")
        keys.append(root / f"{name}.pub")
    fleet_server = FleetServer(root, root / "store", keys)
    fleet_server.start()
    yield fleet_server
    fleet_server.stop()


@pytest.fixture
def live_server(server: FleetServer) -> FleetServer:
    """The session server, restarted first if an earlier scenario left it down."""
    if server.process is None or server.process.poll() is not None:
        server.process = None
        server.start()
    return server


@pytest.fixture(scope="session")
def shared_fleet(server: FleetServer, tmp_path_factory: pytest.TempPathFactory,
                 publisher: PrivateKey) -> Iterator[list[Device]]:
    """Three enrolled devices serving v1 (it sees scratches on every frame, so events flow)."""
    devices = enroll_devices(server, tmp_path_factory.mktemp("shared"), 3, publisher.public.b64, "shared")
    start_all(devices)
    try:
        assert wait_finished(server, deploy(server, "parts:v1", devices))["status"] == "completed"
        wait_serving(devices, ("v1",))
        yield devices
    finally:
        stop_all(devices)


@pytest.fixture
def fleet(shared_fleet: list[Device], live_server: FleetServer) -> list[Device]:
    """The shared fleet with every agent running (an earlier failure may have left one down)."""
    for device in shared_fleet:
        if device.agent.process is None or device.agent.process.poll() is not None:
            device.agent.start()
    wait_serving(shared_fleet, ("v1", "v2"))
    return shared_fleet
