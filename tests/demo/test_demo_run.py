"""`edgewise demo` end to end, as `make demo` runs it (with two devices to keep CI short)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_puts_every_device_on_the_second_bundle_with_events(tmp_path: Path) -> None:
    # A stale registry from an earlier run must not stop a rerun (its 1.0.0 has other content).
    stale = tmp_path / "demo" / "registry" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("left by an earlier run")
    result = subprocess.run(
        [sys.executable, "-m", "edgewise", "demo", "--devices", "2", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=900,
    )
    output = result.stdout + result.stderr
    assert not stale.exists()
    assert result.returncode == 0, output[-3000:]
    assert "done in" in output and "Dashboard: http://127.0.0.1:" in output
    assert "/ui/login with the read-only token ewo_" in output  # how to get in is printed, not left to guess
    device_rows = [line for line in output.splitlines() if "camera-" in line and "│" in line]
    assert len(device_rows) == 2
    for row in device_rows:
        cells = [cell.strip() for cell in row.split("│") if cell.strip()]
        version, health, events, crossings = cells[1], cells[2], int(cells[3]), int(cells[5])
        assert version == "2.0.0", row
        assert health == "ok", row
        assert events > 0, row
        assert crossings > 0, row  # the detection story: vehicles counted on each camera's line
    # every process it started logged to its own file, for a user to read when something fails
    logs = {log.name for log in (tmp_path / "demo" / "logs").glob("*.log")}
    assert {"server.log", "camera-1.log", "camera-2.log"} <= logs


@pytest.mark.slow
def test_sigterm_to_the_demo_stops_its_server_and_agents(tmp_path: Path) -> None:
    import os
    import signal
    import time

    import psutil

    # The conveyor story (--task classify) reaches "agents enrolled" soonest; stopping is the same.
    demo = subprocess.Popen([sys.executable, "-m", "edgewise", "demo", "--devices", "2", "--dir", str(tmp_path / "d"),
                             "--task", "classify"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    assert demo.stdout is not None
    for line in demo.stdout:  # wait until the fleet is up: server and agents running
        seen.append(line)
        if "agents enrolled" in line:
            break
    started = psutil.Process(demo.pid).children(recursive=True)
    assert len(started) >= 3, "".join(seen)  # the server (and its device process) and two agents
    demo.send_signal(signal.SIGTERM)
    demo.communicate(timeout=60)
    assert demo.returncode != 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in started):
        time.sleep(0.2)
    left = [p.pid for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"processes left running after SIGTERM: {left}"
