"""The acceptance tests: a real `edgewise server` and real `edgewise agent` processes on loopback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewise.core.signing import PrivateKey
from tests.agent.fleet import ROOT, Agent, FleetServer, wait_until

pytestmark = pytest.mark.reliability

AGENT_TOML = """
data_dir = "{data_dir}"
trusted_keys = ["{trusted}"]
threads = 1
sync_interval_s = 0.3
long_poll_s = 5
heartbeat_interval_s = 1
telemetry_interval_s = {telemetry_s}
request_timeout_s = 5
[source]
kind = "synthetic"
fps = 20
width = 64
height = 48
[health]
window_s = 1.0
min_frames = 5
max_latency_ms = 25
{rules}
"""
ALARM_RULE = "[[rules]]\nlabels = [\"scratch\"]\nconsecutive = 2\ncooldown_s = 0.25\n"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, bundles, publisher: PrivateKey, stranger: PrivateKey) -> Iterator[FleetServer]:
    from edgewise.registry import open_store

    root = tmp_path_factory.mktemp("fleet")
    store = open_store(root / "store")
    for archive, _manifest in bundles.values():
        store.publish(archive.with_suffix(""))
    keys = []
    for name, key in (("publisher", publisher), ("stranger", stranger)):
        (root / f"{name}.pub").write_text(key.public.b64 + "\n")
        keys.append(root / f"{name}.pub")
    # The server trusts the stranger too, so only the device's own pinned keys stop its bundle.
    server = FleetServer(root, root / "store", keys)
    server.start()
    yield server
    server.stop()


def enrolled_agent(fleet: FleetServer, tmp_path: Path, publisher: PrivateKey, rules: str = "",
                   telemetry_s: float = 5.0) -> tuple[Agent, str]:
    data_dir = tmp_path / "device"
    enroll = subprocess.run(
        [sys.executable, "-m", "edgewise", "agent", "enroll", "--server", fleet.url, "--token",
         fleet.enrollment_token(), "--data-dir", str(data_dir), "--name", tmp_path.name[:60]],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert enroll.returncode == 0, enroll.stderr
    device_id = enroll.stdout.split("enrolled as ")[1].split(";")[0]
    config = tmp_path / "agent.toml"
    config.write_text(AGENT_TOML.format(data_dir=data_dir, trusted=publisher.public.b64, rules=rules,
                                        telemetry_s=telemetry_s))
    return Agent(data_dir, config), device_id


def serving(agent: Agent, version: str) -> bool:
    status = agent.status()
    current = status.get("current_bundle") or {}
    return current.get("version") == version and status["update"]["state"] in ("idle", "failed") \
        and status["health"]["status"] == "ok"


def wait_serving(agent: Agent, version: str, timeout_s: float = 60) -> None:
    try:
        wait_until(lambda: serving(agent, version), timeout_s, f"agent serving {version}")
    except AssertionError:
        raise AssertionError(f"agent not serving {version}:\n{agent.log()}") from None


def test_good_bundle_serves_bad_signature_and_unhealthy_models_never_stick(fleet, tmp_path, publisher) -> None:
    agent, device_id = enrolled_agent(fleet, tmp_path, publisher)
    agent.start()
    try:
        fleet.deploy("parts:v1", device_id)
        wait_serving(agent, "v1")
        frames = agent.status()["extra"]["frames"]
        wait_until(lambda: agent.status()["extra"]["frames"] > frames + 10, 20, "frames processed")
        wait_until(lambda: fleet.device(device_id)["current_version"] == "v1", 20, "server sees v1")

        fleet.deploy("parts:bad-sig", device_id)
        wait_until(lambda: agent.update_record()["state"] == "failed", 60, "bad signature refused")
        record = agent.update_record()
        assert "untrusted key" in record["error"]
        assert record["history"][-3:] == ["download", "verify", "failed"]  # never installed nor activated
        assert serving(agent, "v1")
        wait_until(lambda: fleet.device(device_id)["update_state"] == "failed", 20, "server sees the failure")

        for bad, reason in (("broken", "error rate"), ("slow", "latency")):
            fleet.deploy(f"parts:{bad}", device_id)
            wait_until(lambda bad=bad: agent.update_record()["target"]["version"] == bad
                       and agent.update_record()["state"] == "failed", 60, f"{bad} rolled back")
            record = agent.update_record()
            assert record["history"][-4:] == ["activate", "health-check", "rollback", "failed"], record
            assert reason in record["error"]
            wait_serving(agent, "v1", 20)  # the previous model keeps serving
            frames = agent.status()["extra"]["frames"]
            wait_until(lambda frames=frames: agent.status()["extra"]["frames"] > frames + 5, 20, "still inferring")
        assert agent.process is not None and agent.process.poll() is None
    finally:
        agent.stop()


STATES = ["download", "verify", "install", "activate", "health-check", "commit"]  # + rollback, below


def test_sigkill_in_every_update_state_recovers_to_a_working_model(fleet, tmp_path, publisher) -> None:
    agent, device_id = enrolled_agent(fleet, tmp_path, publisher)
    agent.start()
    fleet.deploy("parts:v1", device_id)
    wait_serving(agent, "v1")
    agent.stop()
    current = "v1"
    for state in STATES:
        target = "v2" if current == "v1" else "v1"
        agent.start(crash_in_state=state)
        fleet.deploy(f"parts:{target}", device_id, allow_downgrade=True)  # back and forth, on purpose
        assert agent.process is not None
        returncode = agent.process.wait(60)
        assert returncode == -9, f"{state}: exit {returncode}\n{agent.log()}"
        assert agent.update_record()["state"] == state
        agent.start()  # the same data directory, no crash hook
        wait_serving(agent, target)
        assert agent.update_record()["history"][-1] == "idle"
        agent.stop()
        current = target
    wait_until(lambda: fleet.device(device_id)["current_version"] == current, 20, "server sees the last one")

    # and in rollback: an unhealthy model, killed while rolling back, ends on the previous model
    agent.start(crash_in_state="rollback")
    fleet.deploy("parts:broken", device_id)
    assert agent.process is not None and agent.process.wait(60) == -9, agent.log()
    agent.start()
    try:
        wait_until(lambda: agent.update_record()["state"] == "failed", 60, "rollback finished")
        wait_serving(agent, current)
    finally:
        agent.stop()


def server_seqs(fleet: FleetServer, device_id: str) -> list[int]:
    with fleet.api() as api:
        telemetry = api.get("/telemetry", params={"device_id": device_id, "limit": 5000}).json()
    return [e["seq"] for e in fleet.events(device_id)] + [t["seq"] for t in telemetry]


def test_offline_every_event_reaches_the_server_exactly_once(fleet, tmp_path, publisher) -> None:
    agent, device_id = enrolled_agent(fleet, tmp_path, publisher, rules=ALARM_RULE, telemetry_s=1.0)
    agent.start()
    try:
        fleet.deploy("parts:scratch", device_id)
        wait_serving(agent, "scratch")
        wait_until(lambda: len(fleet.events(device_id)) >= 3, 30, "alarms reach the server")

        fleet.stop()
        outbox = agent.data_dir / "outbox.sqlite3"
        queued = wait_until(
            lambda: sqlite3.connect(outbox).execute("SELECT COUNT(*) FROM items WHERE kind='event'").fetchone()[0]
            >= 10, 30, "alarms queued while offline")
        assert queued
        frames = agent.status()["extra"]["frames"]
        # inference goes on without the server (status.json is rewritten about once a second)
        wait_until(lambda: agent.status()["extra"]["frames"] > frames, 10, "frames processed while offline")
        fleet.start()
        wait_until(lambda: agent.status()["extra"]["queue_depth"] <= 2, 60, "outbox drained")
    finally:
        agent.stop()

    # Send what the last moments queued, then compare: every seq once, no gaps.
    agent.config.write_text(agent.config.read_text().replace(ALARM_RULE, "").replace("fps = 20", "frames = 3"))
    final = subprocess.run(
        [sys.executable, "-m", "edgewise", "agent", "run", "--once", "--config", str(agent.config)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert final.returncode == 0, final.stderr
    assert sqlite3.connect(agent.data_dir / "outbox.sqlite3").execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
    seqs = server_seqs(fleet, device_id)
    assert len(seqs) == len(set(seqs)), "a seq was stored twice"
    assert sorted(seqs) == list(range(1, max(seqs) + 1)), "a seq never arrived"
    alarms = [e for e in fleet.events(device_id) if e["priority"] == "alarm"]
    assert len(alarms) >= 10 and all(e["label"] == "scratch" for e in alarms)


def test_enrollment_with_a_bad_token_fails_with_a_fix(fleet, tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgewise", "agent", "enroll", "--server", fleet.url, "--token", "ewe_nope",
         "--data-dir", str(tmp_path / "d")], cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert "error:" in done.stderr and "fix:" in done.stderr
    assert "used up or expired" in done.stderr and '{"error"' not in done.stderr  # the server's words, not its JSON
    assert not (tmp_path / "d" / "identity.json").exists()
    assert not (tmp_path / "d" / "device.key").exists()  # a key no server knows is not left to confuse a retry
    retry = subprocess.run(
        [sys.executable, "-m", "edgewise", "agent", "enroll", "--server", fleet.url, "--token",
         fleet.enrollment_token(), "--data-dir", str(tmp_path / "d")], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )
    assert retry.returncode == 0, retry.stderr
    assert (tmp_path / "d" / "device.key").stat().st_mode & 0o077 == 0  # the key stays private
