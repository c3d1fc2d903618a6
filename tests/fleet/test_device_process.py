"""The device process: device requests worked beside the HTTP server, in a process of their own.

The protocol tests (`test_device_api.py`) already run through it; these cover what the split
itself adds: errors that keep their status across the socket, a crash answered with 503 and
followed by a restart, two processes writing one SQLite file, and no process left behind.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgewise.core.errors import AuthError, InternalError, ServiceUnavailable
from edgewise.core.signing import PrivateKey
from edgewise.core.wire import ReportedState
from edgewise.fleet.app import create_app
from edgewise.fleet.errors import Forbidden
from edgewise.fleet.gateway.device_process import DeviceProcess, FrameReader, frame, portable
from edgewise.fleet.gateway.device_requests import InProcessDeviceRequests
from edgewise.fleet.gateway.requests import ReportState
from tests.agent.fleet import wait_until
from tests.fleet.conftest import RunningServer, make_settings, start_server
from tests.services import free_port, wait_for_port


def children_of(pid: int) -> list[int]:
    """Live child processes of `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(pid) and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def device_process_of(fleet: RunningServer) -> subprocess.Popen[bytes]:
    requests = fleet.ctx.device_requests
    assert isinstance(requests, DeviceProcess) and requests.process is not None
    return requests.process


def test_frames_survive_any_split() -> None:
    messages = [("jobs", [1, 2, 3]), ("answers", [(7, {"a": b"\x00" * 300}, None)], [], True), ("stop",)]
    stream = b"".join(frame(message) for message in messages)
    reader = FrameReader()
    received = []
    for i in range(len(stream)):  # one byte at a time: every split point at once
        received += reader.feed(stream[i:i + 1])
    assert received == messages
    assert FrameReader().feed(stream[:-1]) == messages[:2]  # a partial last frame waits for the rest


def test_errors_cross_with_their_kind_and_fix() -> None:
    error = pickle.loads(pickle.dumps(Forbidden("this device has been revoked", "ask an operator")))
    assert isinstance(error, Forbidden) and (error.message, error.fix) == ("this device has been revoked",
                                                                            "ask an operator")
    bug = pickle.loads(pickle.dumps(portable(KeyError("nonce"))))
    assert isinstance(bug, InternalError) and bug.kind == "KeyError" and "nonce" in bug.message
    ours = AuthError("unknown device")
    assert portable(ours) is ours and portable(None) is None


def test_device_requests_run_in_a_second_process(fleet: RunningServer) -> None:
    child = device_process_of(fleet)
    assert child.pid in children_of(os.getpid())
    device = fleet.device()
    assert device.report(health="ok").status_code == 204
    batch = {"events": [{"seq": 1, "ts": time.time(), "type": "alarm"}]}
    assert device.request("POST", "/device/ingest", batch).json()["acked"] == [1]
    assert device.request("POST", "/device/ingest", batch).json()["duplicates"] == 1
    assert device.desired().status_code == 200
    # Refusals made in the device process keep their status and message.
    stranger = device.request("PUT", "/device/state", {}, as_device="dev-unknown")
    assert stranger.status_code == 401 and stranger.json()["error"]["message"] == "unknown device"
    assert fleet.operator().post(f"/devices/{device.device_id}/revoke").status_code == 200
    revoked = device.report()
    assert revoked.status_code == 403 and "revoked" in revoked.json()["error"]["message"]


def test_a_killed_device_process_answers_503_and_is_restarted(fleet: RunningServer) -> None:
    device = fleet.device()
    assert device.report().status_code == 204
    first = device_process_of(fleet)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    refused = device.report()
    assert refused.status_code == 503, refused.text
    assert "retry" in refused.json()["error"]["fix"]
    # Not ready meanwhile (a load balancer sends devices elsewhere); restarted after a short backoff.
    assert device.http.get("/healthz").status_code == 503
    wait_until(lambda: device.report().status_code == 204, 20, "the device process restarted")
    assert device_process_of(fleet).pid != first.pid
    assert device.http.get("/healthz").json()["status"] == "ok"
    batch = {"events": [{"seq": 2, "ts": time.time(), "type": "alarm"}]}
    assert device.request("POST", "/device/ingest", batch).json()["acked"] == [2]


def test_two_processes_write_one_sqlite_file(sqlite_url: str, tmp_path: Path, publisher_key: PrivateKey) -> None:
    """Operator writes (the server process) and heartbeats (the device process) at once, with no
    'database is locked' and nothing lost."""
    fleet = start_server(make_settings(sqlite_url, tmp_path, publisher_key, device_process=True))
    try:
        devices = [fleet.device(f"cam-{i}") for i in range(4)]
        operator = fleet.operator("deploy")
        failures: list[str] = []

        def heartbeats(client) -> None:
            for _ in range(15):
                response = client.report()
                if response.status_code != 204:
                    failures.append(f"heartbeat {response.status_code} {response.text}")

        threads = [threading.Thread(target=heartbeats, args=(d,)) for d in devices]
        for thread in threads:
            thread.start()
        for i in range(30):
            response = operator.patch(f"/devices/{devices[i % 4].device_id}", json={"set_tags": {"round": str(i)}})
            if response.status_code != 200:
                failures.append(f"tag {response.status_code} {response.text}")
        for thread in threads:
            thread.join(60)
        assert failures == []
        shown = fleet.operator("read").get(f"/devices/{devices[1].device_id}").json()
        assert shown["tags"]["round"] == "29" and shown["online"] is True
    finally:
        fleet.stop()


def test_in_memory_sqlite_and_single_process_work_in_process(tmp_path: Path) -> None:
    in_memory = create_app(make_settings("sqlite://", tmp_path, None, device_process=True))
    single = create_app(make_settings(f"sqlite:///{tmp_path / 'f.db'}", tmp_path, None, device_process=False))
    split = create_app(make_settings(f"sqlite:///{tmp_path / 'f.db'}", tmp_path, None, device_process=True))
    try:
        assert isinstance(in_memory.state.ctx.device_requests, InProcessDeviceRequests)
        assert isinstance(single.state.ctx.device_requests, InProcessDeviceRequests)
        assert isinstance(split.state.ctx.device_requests, DeviceProcess)
    finally:
        for app in (in_memory, single, split):
            app.state.ctx.db.dispose()


def test_stopping_the_server_stops_its_device_process(fleet: RunningServer) -> None:
    child = device_process_of(fleet)
    fleet.stop()
    assert child.poll() == 0  # asked to stop, it stopped cleanly
    with pytest.raises(ServiceUnavailable):  # and the server refuses device work from then on
        asyncio.run(fleet.ctx.device_requests.submit(ReportState(ReportedState())))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("single_process", [False, True])
def test_server_command_processes(tmp_path: Path, single_process: bool) -> None:
    """`edgewise server` starts one device process (none with --single-process), and a server
    killed outright takes it down: it sees the socket close and exits."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "edgewise", "server", "--db", f"sqlite:///{tmp_path / 'f.db'}", "--port", str(port),
         "--store", str(tmp_path / "store"), "--log-level", "warning",
         *(["--single-process"] if single_process else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, 60, process)
        children = children_of(process.pid)
        assert len(children) == (0 if single_process else 1)
        process.kill()
        process.wait(15)
        for child in children:
            wait_until(lambda child=child: not Path(f"/proc/{child}").exists() or
                       Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
                       15, "the device process to end with its server")
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(15)


def test_a_device_process_that_cannot_start_stops_the_server_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from edgewise.cli.main import main

    monkeypatch.setattr(sys, "executable", "/bin/false")  # the device process exits at once, code 1
    code = main(["server", "--db", f"sqlite:///{tmp_path / 'f.db'}", "--store", str(tmp_path / "store"),
                 "--port", str(free_port()), "--log-level", "warning"])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: the device request process exited with code 1" in err and "--single-process" in err
    assert "Traceback" not in err
