"""The simulator drives the real protocol: devices enroll, heartbeat, send events and take updates."""

from __future__ import annotations

import asyncio
import threading
import time

from edgewise.fleet.tools.simulator import SimulationConfig, run_simulation
from tests.fleet.conftest import RunningServer


def test_simulated_fleet_sends_events_and_takes_a_rollout(sqlite_fleet: RunningServer, bundles) -> None:
    published = bundles.publish()
    token = sqlite_fleet.enrollment_token(uses=8)
    config = SimulationConfig(server=sqlite_fleet.url, devices=8, enroll_token=token, duration_s=6.0,
                              event_rate=2.0, heartbeat_s=1.0, batch_interval_s=0.5, long_poll_s=2.0)
    deployer = sqlite_fleet.operator("deploy")

    def deploy_when_enrolled() -> None:
        deadline = time.monotonic() + 20
        while deployer.get("/devices").json()["total"] < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        deployer.post("/deployments", json={"bundle": published.ref, "strategy": {"name": "staged", "batches": 2}})

    thread = threading.Thread(target=deploy_when_enrolled)
    thread.start()
    stats = asyncio.run(run_simulation(config))
    thread.join()
    assert stats.errors == 0
    assert len(stats.updates) == 8
    assert stats.events_acked >= 8 * 2 * 3  # at least half the nominal rate got through
    stored = deployer.get("/events", params={"limit": 1000}).json()["items"]
    assert len(stored) == stats.events_acked  # every acked event stored, none twice
    deployment = deployer.get("/deployments").json()[0]
    assert deployment["status"] == "completed" and deployment["progress"] == {"succeeded": 8}
    assert "simulated" in stats.summary() or "events acked" in stats.summary()


def test_failing_update_in_the_simulator_halts_a_canary(sqlite_fleet: RunningServer, bundles) -> None:
    published = bundles.publish()
    token = sqlite_fleet.enrollment_token(uses=10)
    config = SimulationConfig(server=sqlite_fleet.url, devices=10, enroll_token=token, duration_s=4.0,
                              heartbeat_s=1.0, batch_interval_s=1.0, long_poll_s=1.0,
                              failing_digests=[published.digest])
    deployer = sqlite_fleet.operator("deploy")

    def deploy_when_enrolled() -> None:
        while deployer.get("/devices").json()["total"] < 10:
            time.sleep(0.1)
        deployer.post("/deployments", json={"bundle": published.ref,
                                            "strategy": {"name": "canary", "percent": 20, "bake_s": 1}})

    thread = threading.Thread(target=deploy_when_enrolled)
    thread.start()
    stats = asyncio.run(run_simulation(config))
    thread.join()
    deployment = deployer.get("/deployments").json()[0]
    assert deployment["status"] == "halted"
    assert deployment["progress"] == {"failed": 2, "pending": 8}
    assert stats.updates == {}
