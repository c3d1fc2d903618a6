"""Agents die (kill -9) inside update states during a rollout, and run out of outbox budget."""

from __future__ import annotations

import pytest

from tests.agent.fleet import wait_until
from tests.reliability.harness import (
    Ledger,
    deploy,
    deployment,
    enroll_devices,
    healthy,
    read_outbox,
    server_seqs,
    start_all,
    stop_all,
    wait_finished,
    wait_serving,
)
from tests.services import free_port

pytestmark = pytest.mark.reliability

# One device per state, all in one canary rollout: the canary dies first, the rest after the bake.
STATES = ("download", "verify", "install", "activate", "health-check", "commit")
CRASH_IN = {f"crash-{i + 1}": state for i, state in enumerate(STATES)}


def test_kill_9_agents_in_update_states_within_a_rollout_recover(live_server, tmp_path, publisher, table) -> None:
    devices = enroll_devices(live_server, tmp_path, len(CRASH_IN), publisher.public.b64, "crash")
    start_all(devices)
    try:
        assert wait_finished(live_server, deploy(live_server, "parts:v1", devices))["status"] == "completed"
        wait_serving(devices, ("v1",))
        stop_all(devices)
        ledger = Ledger(live_server, devices)
        start_all(devices, crash_in_state=CRASH_IN)
        deployment_id = deploy(live_server, "parts:v2", devices, name="canary", percent=16, bake_s=0.5)
        crashed: dict[str, str] = {}

        def restart_the_killed() -> bool:
            for device in devices:
                process = device.agent.process
                if process is not None and process.poll() is not None and device.name not in crashed:
                    assert process.returncode == -9, f"{device.name} exit {process.returncode}\n{device.agent.log()}"
                    crashed[device.name] = device.update_record()["state"]
                    device.agent.start()  # the same data directory, no crash hook
            return deployment(live_server, deployment_id)["status"] != "rolling"

        wait_until(restart_the_killed, 120, "the rollout to finish while agents die and restart")
        assert crashed == CRASH_IN, "each agent must have died in its own update state"
        finished = deployment(live_server, deployment_id)
        assert finished["status"] == "completed", finished
        assert {t["status"] for t in finished["targets"]} == {"succeeded"}
        wait_serving(devices, ("v2",))
        assert all(d.update_record()["history"][-1] == "idle" for d in devices)
        ledger.wait_delivered(60)
        table.add("3 kill -9 agents, one per update state", ledger.check(), healthy(devices),
                  len(devices), finished["status"])
    finally:
        stop_all(devices)


def test_kill_9_agent_in_rollback_ends_on_the_previous_model_and_halts(live_server, tmp_path, publisher,
                                                                       table) -> None:
    devices = enroll_devices(live_server, tmp_path, 2, publisher.public.b64, "rollback")
    start_all(devices)
    try:
        assert wait_finished(live_server, deploy(live_server, "parts:v1", devices))["status"] == "completed"
        wait_serving(devices, ("v1",))
        stop_all(devices)
        ledger = Ledger(live_server, devices)
        start_all(devices, crash_in_state={d.name: "rollback" for d in devices})
        deployment_id = deploy(live_server, "parts:crashes", devices, name="canary", percent=50, bake_s=0.5)
        targets = deployment(live_server, deployment_id)["targets"]
        canary = next(d for d in devices if d.device_id == next(t for t in targets if t["batch"] == 0)["device_id"])
        assert canary.agent.process is not None and canary.agent.process.wait(60) == -9, canary.agent.log()
        assert canary.update_record()["state"] == "rollback"
        canary.agent.start()
        finished = wait_finished(live_server, deployment_id)
        assert finished["status"] == "halted", finished
        assert sorted(t["status"] for t in finished["targets"]) == ["failed", "pending"]
        wait_until(lambda: canary.update_record()["state"] == "failed", 30, "the rollback to finish")
        wait_serving(devices, ("v1",))
        ledger.wait_delivered(60)
        table.add("3b kill -9 the canary in rollback", ledger.check(), healthy(devices), len(devices),
                  finished["status"])
    finally:
        stop_all(devices)


OUTBOX = {"max_items": 12, "max_bytes": 6000}


def test_full_outbox_is_bounded_keeps_alarms_and_reports_drops(live_server, tmp_path, publisher, table) -> None:
    (device,) = enroll_devices(live_server, tmp_path, 1, publisher.public.b64, "budget", telemetry_s=0.3,
                               outbox=OUTBOX)
    device.agent.start()
    try:
        assert wait_finished(live_server, deploy(live_server, "parts:v1", [device]))["status"] == "completed"
        wait_serving([device], ("v1",))
        device.agent.stop()
        ledger = Ledger(live_server, [device])
        # Cut the device off (its server is a dead port) and let the outbox overflow.
        device.write_config(f"http://127.0.0.1:{free_port()}")
        device.agent.start()
        wait_until(lambda: read_outbox(device).dropped.get("event", 0) >= 3 and read_outbox(device).queued_ranks
                   .count(0) >= 2, 60, "events dropped from the full outbox with alarms queued")
        assert device.serving(("v1",))
        device.agent.stop()
        full = read_outbox(device)
        assert len(full.queued) <= OUTBOX["max_items"] and full.queued_bytes <= OUTBOX["max_bytes"]
        # The eviction order: snapshot, telemetry, event, alarm. Nothing queued may rank below a dropped class.
        ranks = {"alarm": 0, "event": 1, "telemetry": 2, "snapshot": 3}
        assert full.dropped.get("telemetry", 0) > 0 and "alarm" not in full.dropped, full.dropped
        assert max(full.queued_ranks) <= min(ranks[c] for c in full.dropped), (full.queued_ranks, full.dropped)
        alarms = full.alarm_seqs

        device.write_config(live_server.url)  # the network is back
        device.agent.start()
        wait_serving([device], ("v1",))
        wait_until(lambda: live_server.device(device.device_id)["dropped"] == read_outbox(device).dropped, 30,
                   "the server to know the drop counts")
        wait_until(lambda: set(alarms) <= set(server_seqs(live_server, device)), 30, "kept alarms to arrive")
        counts = ledger.check(allow_dropped=True)
        evicted = sum(full.dropped.values())
        assert counts["missing"] <= evicted, (counts, full.dropped)
        counts["dropped"] = evicted
        evicted_by_class = ", ".join(f"{count} {kind}" for kind, count in sorted(full.dropped.items()))
        table.add(f"5 full outbox (dropped {evicted_by_class})", counts, healthy([device]), 1)
    finally:
        device.agent.stop()
