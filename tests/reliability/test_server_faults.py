"""The server dies (kill -9) during ingest and during a rollout, or is away for a while."""

from __future__ import annotations

import time

import pytest

from tests.agent.fleet import wait_until
from tests.reliability.harness import (
    Ledger,
    deploy,
    deployment,
    healthy,
    kill_server,
    read_outbox,
    restart_server,
    wait_finished,
    wait_serving,
)

pytestmark = pytest.mark.reliability


def test_kill_9_server_during_ingest_loses_and_duplicates_nothing(fleet, live_server, table) -> None:
    ledger = Ledger(live_server, fleet)
    for _ in range(2):  # twice, so at least one kill lands mid-batch
        wait_until(lambda: all(read_outbox(d).high_seq > ledger.start[d.name] for d in fleet), 20, "events flowing")
        time.sleep(1.5)
        kill_server(live_server)
        queued = {d.name: read_outbox(d).queued for d in fleet}
        # Restart only once every device has made something the dead server never acknowledged.
        wait_until(lambda queued=queued: all(read_outbox(d).queued - queued[d.name] for d in fleet), 20,
                   "items made while the server is down")
        restart_server(live_server)
    ledger.wait_delivered(60)
    counts = ledger.check()
    assert counts["produced"] > 0
    table.add("1 kill -9 server during ingest", counts, healthy(fleet), len(fleet))


def test_kill_9_server_during_rollout_still_completes_on_a_working_model(fleet, live_server, table) -> None:
    ledger = Ledger(live_server, fleet)
    target = "v2" if fleet[0].serving(("v1",)) else "v1"
    deployment_id = deploy(live_server, f"parts:{target}", fleet, name="canary", percent=33, bake_s=3.0)
    wait_until(lambda: deployment(live_server, deployment_id)["progress"].get("succeeded", 0) >= 1, 60,
               "the canary to succeed")
    baking = deployment(live_server, deployment_id)
    kill_server(live_server)  # mid-rollout: canary done, baking, the rest not yet assigned
    assert baking["status"] == "rolling" and baking["current_batch"] == 0, baking
    time.sleep(1.0)
    restart_server(live_server)
    finished = wait_finished(live_server, deployment_id)
    assert finished["status"] == "completed", finished
    assert {t["status"] for t in finished["targets"]} == {"succeeded"}
    assert [h["to_state"] for h in finished["history"]].count("completed") == 1
    wait_serving(fleet, (target,))
    ledger.wait_delivered(60)
    table.add("2 kill -9 server during rollout", ledger.check(), healthy(fleet), len(fleet), finished["status"])


def test_server_away_for_a_while_every_event_arrives_exactly_once(fleet, live_server, table) -> None:
    ledger = Ledger(live_server, fleet)
    live_server.stop()
    marks = {d.name: read_outbox(d).high_seq for d in fleet}
    frames = {d.name: d.frames() for d in fleet}
    wait_until(lambda: all(len(read_outbox(d).queued) >= 5 and read_outbox(d).high_seq > marks[d.name] + 5
                           for d in fleet), 30, "items queued while the server is away")
    assert all(d.frames() > frames[d.name] for d in fleet), "inference must not wait for the network"
    assert all(d.serving() for d in fleet)
    restart_server(live_server)
    ledger.wait_delivered(60)
    counts = ledger.check()
    table.add("4 server away (network stop)", counts, healthy(fleet), len(fleet))
