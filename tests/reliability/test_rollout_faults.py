"""Broken bundles behind a canary, and a device revoked in the middle of a rollout."""

from __future__ import annotations

from typing import Any

import pytest

from edgewise.agent.client import DeviceClient
from edgewise.agent.identity import load_identity
from edgewise.core.errors import AuthError
from tests.agent.fleet import FleetServer, wait_until
from tests.reliability.harness import (
    Device,
    Ledger,
    corrupt_archive,
    deploy,
    deployment,
    enroll_devices,
    healthy,
    start_all,
    stop_all,
    wait_finished,
    wait_serving,
)

pytestmark = pytest.mark.reliability

CANARY = {"name": "canary", "percent": 33, "bake_s": 1.0, "failure_threshold": 0.0}
# The reason each broken bundle fails on the canary, as its update record says.
BROKEN = {
    "corrupt": "sha256",  # bytes flipped in the stored archive after the server verified it
    "bad-sig": "untrusted key",  # signed by a key the server knows and the devices do not pin
    "crashes": "error rate",  # loads, then fails on every frame
    "too-slow": "latency",  # correct, but far over the devices' max_latency_ms
}


def register(server: FleetServer, ref: str) -> dict[str, Any]:
    with server.api() as api:
        response = api.post("/bundles", json={"ref": ref})
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.mark.parametrize("version", list(BROKEN))
def test_broken_bundle_halts_after_the_canary_and_touches_no_one_else(fleet, live_server, version, table) -> None:
    ledger = Ledger(live_server, fleet)
    bundle = register(live_server, f"parts:{version}")
    if version == "corrupt":
        from edgewise.registry import open_store

        corrupt_archive(open_store(live_server.store_dir).archive_path(f"parts:{version}"))
    before = {d.name: d.agent.status()["current_bundle"]["version"] for d in fleet}
    deployment_id = deploy(live_server, f"parts:{version}", fleet, **CANARY)
    finished = wait_finished(live_server, deployment_id, 90)
    assert finished["status"] == "halted", finished
    canaries = [t for t in finished["targets"] if t["batch"] == 0]
    rest = [t for t in finished["targets"] if t["batch"] != 0]
    assert len(canaries) == 1 and canaries[0]["status"] == "failed", canaries
    assert rest and {t["status"] for t in rest} == {"pending"}, "the rest of the fleet must never be assigned"
    by_id = {d.device_id: d for d in fleet}
    canary = by_id[canaries[0]["device_id"]]
    # The server halts as soon as the canary reports rollback; the device finishes rolling back after.
    wait_until(lambda: canary.update_record()["state"] == "failed", 30, "the canary to finish rolling back")
    record = canary.update_record()
    assert record["target"]["digest"] == bundle["digest"]
    assert BROKEN[version] in record["error"], record["error"]
    for target in rest:
        untouched = by_id[target["device_id"]]
        assert live_server.device(untouched.device_id)["desired_deployment_id"] != deployment_id
        assert (untouched.update_record().get("target") or {}).get("digest") != bundle["digest"]
    wait_serving(fleet, ("v1", "v2"), 30)
    assert {d.name: d.agent.status()["current_bundle"]["version"] for d in fleet} == before
    table.add(f"6 broken bundle: {version}", ledger.check(), healthy(fleet), len(fleet), finished["status"])


def test_revoked_device_is_refused_at_once_and_the_rollout_goes_on(live_server, tmp_path, publisher, table) -> None:
    devices = enroll_devices(live_server, tmp_path, 3, publisher.public.b64, "revoke")
    start_all(devices)
    try:
        assert wait_finished(live_server, deploy(live_server, "parts:v1", devices))["status"] == "completed"
        wait_serving(devices, ("v1",))
        ledger = Ledger(live_server, devices)
        # Tolerates one failed device of three; the bake gives the operator time to revoke.
        deployment_id = deploy(live_server, "parts:v2", devices, name="canary", percent=33, bake_s=4.0,
                               failure_threshold=0.5)
        wait_until(lambda: deployment(live_server, deployment_id)["progress"].get("succeeded", 0) == 1, 60,
                   "the canary to succeed")
        waiting = [t for t in deployment(live_server, deployment_id)["targets"] if t["status"] == "pending"]
        assert len(waiting) == 2
        by_id = {d.device_id: d for d in devices}
        revoked: Device = by_id[waiting[0]["device_id"]]
        with live_server.api() as api:
            assert api.post(f"/devices/{revoked.device_id}/revoke").status_code == 200
        identity = load_identity(revoked.agent.data_dir)
        client = DeviceClient(live_server.url, identity.device_id, identity.key, 5)
        with pytest.raises(AuthError, match="revoked"):  # at once: the very next request
            client.desired_state(None)
        client.close()

        finished = wait_finished(live_server, deployment_id, 60)
        assert finished["status"] == "completed", finished
        statuses = {t["device_id"]: (t["status"], t["detail"]) for t in finished["targets"]}
        assert statuses.pop(revoked.device_id) == ("failed", "device revoked")
        assert {status for status, _ in statuses.values()} == {"succeeded"}
        others = [d for d in devices if d is not revoked]
        wait_serving(others, ("v2",))
        # The revoked device was never offered v2; its own model keeps running, offline from the fleet.
        assert (revoked.update_record().get("target") or {}).get("version") != "v2"
        assert revoked.serving(("v1",))
        assert live_server.device(revoked.device_id)["revoked"] is True
        counts = ledger.check()  # what the revoked device could not deliver stays queued, not lost
        table.add("7 revoke a device mid-rollout", counts, healthy(devices), len(devices), finished["status"])
    finally:
        stop_all(devices)
