"""Deployments against a real server: strategies, automatic halt, rollback, signature checks, history."""

from __future__ import annotations

import time
from typing import Any

import pytest

from edgewise.core.signing import PrivateKey
from tests.fleet.conftest import DeviceClient, RunningServer


def wait_for(predicate: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def desired_digest(device: DeviceClient) -> str | None:
    bundle = device.desired().json()["bundle"]
    return None if bundle is None else bundle["digest"]


def fleet_of(fleet: RunningServer, count: int, group: str = "lobby") -> list[DeviceClient]:
    token = fleet.enrollment_token(uses=count, group=group)
    devices = []
    for index in range(count):
        device = DeviceClient(fleet.url)
        fleet.clients.append(device.http)
        assert device.enroll(token, f"cam-{index}").status_code == 200
        assert device.report().status_code == 204
        devices.append(device)
    return devices


def deploy(fleet: RunningServer, ref: str, selector: dict[str, Any], **strategy: Any) -> dict[str, Any]:
    response = fleet.operator("deploy").post("/deployments", json={"bundle": ref, "selector": selector,
                                                                    "strategy": strategy})
    assert response.status_code == 201, response.text
    return dict(response.json())


def show(fleet: RunningServer, deployment_id: str) -> dict[str, Any]:
    return dict(fleet.operator("read").get(f"/deployments/{deployment_id}").json())


def test_failing_canary_halts_and_the_rest_is_never_touched(fleet: RunningServer, bundles) -> None:
    devices = fleet_of(fleet, 10)
    published = bundles.publish()
    revisions = {d.device_id: d.desired().json()["revision"] for d in devices}
    deployment = deploy(fleet, published.ref, {"group": "lobby"}, name="canary", percent=10, bake_s=0.5)
    canaries = [t["device_id"] for t in deployment["targets"] if t["status"] == "assigned"]
    assert len(canaries) == 1 and deployment["batch_count"] == 2
    canary = next(d for d in devices if d.device_id == canaries[0])
    assert desired_digest(canary) == published.digest
    canary.report(update_state="download", target_digest=published.digest, deployment_id=deployment["id"])
    canary.report(update_state="failed", target_digest=published.digest, deployment_id=deployment["id"],
                  health="ok")
    halted = wait_for(lambda: (d := show(fleet, deployment["id"]))["status"] == "halted" and d)
    assert "1 of 1 device(s) failed" in halted["reason"]
    time.sleep(1.0)  # longer than the bake time: a halted rollout must not move on
    assert show(fleet, deployment["id"])["status"] == "halted"
    for device in devices:
        if device is canary:
            continue
        state = device.desired().json()
        assert state["bundle"] is None and state["revision"] == revisions[device.device_id]
    statuses = {t["device_id"]: t["status"] for t in show(fleet, deployment["id"])["targets"]}
    assert statuses[canary.device_id] == "failed"
    assert sorted(set(statuses.values())) == ["failed", "pending"]
    history = [(h["from_state"], h["to_state"]) for h in halted["history"]]
    assert ("rolling", "halted") in history and ("assigned", "updating") in history


def test_healthy_canary_then_the_rest_then_completed(fleet: RunningServer, bundles) -> None:
    devices = fleet_of(fleet, 5)
    published = bundles.publish()
    deployment = deploy(fleet, published.ref, {"group": "lobby"}, name="canary", percent=20, bake_s=0.3)
    first = [d for d in devices if desired_digest(d) == published.digest]
    assert len(first) == 1
    first[0].report(current=published, health="ok")
    wait_for(lambda: all(desired_digest(d) == published.digest for d in devices))
    assert show(fleet, deployment["id"])["current_batch"] == 1
    for device in devices:
        device.report(current=published, health="ok")
    done = wait_for(lambda: (d := show(fleet, deployment["id"]))["status"] == "completed" and d)
    assert done["progress"] == {"succeeded": 5}


def test_staged_batches_go_one_after_another(fleet: RunningServer, bundles) -> None:
    devices = fleet_of(fleet, 6)
    published = bundles.publish()
    deployment = deploy(fleet, published.ref, {}, name="staged", batches=3, require_health=False)
    for batch in range(3):
        assigned = [d for d in devices if desired_digest(d) == published.digest]
        assert len(assigned) == 2 * (batch + 1)
        for device in assigned:
            device.report(current=published)
        if batch < 2:
            wait_for(lambda b=batch: show(fleet, deployment["id"])["current_batch"] == b + 1)
    wait_for(lambda: show(fleet, deployment["id"])["status"] == "completed")


def test_rollback_restores_the_previous_desired_state(fleet: RunningServer, bundles) -> None:
    devices = fleet_of(fleet, 3)
    v1, v2 = bundles.publish(version="1.0.0"), bundles.publish(version="2.0.0")
    first = deploy(fleet, v1.ref, {"group": "lobby"})
    for device in devices:
        device.report(current=v1, health="ok")
    wait_for(lambda: show(fleet, first["id"])["status"] == "completed")
    before = {d.device_id: d.desired().json() for d in devices}
    second = deploy(fleet, v2.ref, {"group": "lobby"})
    assert all(desired_digest(d) == v2.digest for d in devices)
    devices[0].report(current=v2, health="ok")
    rolled = fleet.operator("deploy").post(f"/deployments/{second['id']}/rollback")
    assert rolled.status_code == 200 and rolled.json()["status"] == "rolled_back"
    for device in devices:
        state = device.desired().json()
        assert state["bundle"]["digest"] == v1.digest
        assert state["deployment_id"] == first["id"]
        assert int(state["revision"]) > int(before[device.device_id]["revision"])
        assert state["allow_downgrade"] is True  # the operator's rollback lets devices take the older version
    assert all(before[d.device_id]["allow_downgrade"] is False for d in devices)
    again = fleet.operator("deploy").post(f"/deployments/{second['id']}/rollback")
    assert again.status_code == 409


def test_halt_by_operator_and_busy_devices(fleet: RunningServer, bundles) -> None:
    devices = fleet_of(fleet, 2)
    v1, v2 = bundles.publish(version="1.0.0"), bundles.publish(version="2.0.0")
    deployment = deploy(fleet, v1.ref, {"ids": [devices[0].device_id]})
    busy = fleet.operator("deploy").post("/deployments", json={"bundle": v2.ref, "selector": {}})
    assert busy.status_code == 409
    halted = fleet.operator("deploy").post(f"/deployments/{deployment['id']}/halt")
    assert halted.json()["status"] == "halted"
    assert fleet.operator("deploy").post(f"/deployments/{deployment['id']}/halt").status_code == 409
    nobody = fleet.operator("deploy").post("/deployments", json={"bundle": v2.ref, "selector": {"group": "none"}})
    assert nobody.status_code == 400 and "matches no enrolled device" in nobody.json()["error"]["message"]


def test_only_verified_bundles_can_be_deployed(fleet: RunningServer, bundles) -> None:
    fleet_of(fleet, 1)
    unsigned = bundles.publish(name="unsigned", sign=False)
    stranger = bundles.publish(name="stranger", key=PrivateKey.generate())
    deployer = fleet.operator("deploy")
    for published, words in ((unsigned, "not signed"), (stranger, "untrusted key")):
        refused = deployer.post("/deployments", json={"bundle": published.ref})
        assert refused.status_code == 422, refused.text
        assert words in refused.json()["error"]["message"]
    assert deployer.post("/deployments", json={"bundle": "missing:9.9"}).status_code == 404
    assert deployer.get("/bundles").json() == []


@pytest.mark.parametrize("timeout_s", [0.3])
def test_silent_device_times_out_and_halts(sqlite_fleet: RunningServer, bundles, timeout_s: float) -> None:
    fleet_of(sqlite_fleet, 2)
    published = bundles.publish()
    deployment = deploy(sqlite_fleet, published.ref, {}, device_timeout_s=timeout_s, failure_threshold=0.6)
    halted = wait_for(lambda: (d := show(sqlite_fleet, deployment["id"]))["status"] == "halted" and d)
    assert all(t["status"] == "failed" and "no success" in t["detail"] for t in halted["targets"])


def test_bundles_from_an_oci_registry_are_served_from_the_cache(tmp_path, publisher_key, oci_registry) -> None:
    from edgewise.registry import open_store
    from tests.fleet.conftest import BundleFactory, make_settings, start_server

    store_url = f"oci://{oci_registry.url}/edgewise"
    (tmp_path / "bundles").mkdir()
    factory = BundleFactory(tmp_path / "bundles", open_store(store_url, cache_dir=tmp_path / "publisher-cache"),
                            publisher_key)
    published = factory.publish(name="ocidet")
    settings = make_settings(f"sqlite:///{tmp_path / 'f.db'}", tmp_path, publisher_key).model_copy(
        update={"store_url": store_url})
    fleet = start_server(settings)
    try:
        device = fleet.device()
        deploy(fleet, published.ref, {})
        state = device.desired().json()
        archive = device.request("GET", state["bundle"]["url"].removeprefix("/api/v1"))
        assert archive.status_code == 200 and len(archive.content) == state["bundle"]["size_bytes"]
        import hashlib

        assert hashlib.sha256(archive.content).hexdigest() == archive.headers["X-Edgewise-Archive-Sha256"]
    finally:
        fleet.stop()


def test_a_poll_that_reads_a_change_early_is_held_until_its_turn(tmp_path, publisher_key, bundles) -> None:
    """Rollouts wake devices at a pace; a device whose poll reads the change before its turn (a
    fresh poll, a re-read) must not outrun that pace, or a fleet's polls would stampede anyway."""
    from tests.fleet.conftest import make_settings, start_server

    fleet = start_server(make_settings(f"sqlite:///{tmp_path / 'f.db'}", tmp_path, publisher_key,
                                       wake_rate_per_s=2.0))  # the first device at once, then one per 0.5 s
    try:
        devices = sorted(fleet_of(fleet, 3), key=lambda d: d.device_id)
        etags = [d.desired().headers["ETag"] for d in devices]
        published = bundles.publish()
        deploy(fleet, published.ref, {})
        assert devices[0].desired(etags[0]).json()["bundle"]["digest"] == published.digest  # its turn came
        started = time.monotonic()
        held = devices[2].desired(etags[2], wait=10)
        assert held.status_code == 200 and held.json()["bundle"]["digest"] == published.digest
        assert 0.4 < time.monotonic() - started < 5  # told at its turn, not at once, not at the timeout
        assert devices[1].desired(etags[1]).status_code == 200  # no wait: a plain read is never held
    finally:
        fleet.stop()


def test_a_deployment_allows_a_downgrade_only_when_it_says_so(fleet: RunningServer, bundles) -> None:
    devices = fleet_of(fleet, 2)
    v1 = bundles.publish(version="1.0.0")
    plain = deploy(fleet, v1.ref, {"ids": [devices[0].device_id]})
    assert devices[0].desired().json()["allow_downgrade"] is False
    explicit = deploy(fleet, v1.ref, {"ids": [devices[1].device_id]}, allow_downgrade=True)
    assert devices[1].desired().json()["allow_downgrade"] is True
    assert show(fleet, explicit["id"])["strategy"]["allow_downgrade"] is True  # recorded in the deployment
    assert show(fleet, plain["id"])["strategy"]["allow_downgrade"] is False


def test_a_rolled_back_canary_lists_no_device_as_pending(fleet: RunningServer, bundles) -> None:
    devices = fleet_of(fleet, 3)
    v1 = bundles.publish(version="1.0.0")
    canary = deploy(fleet, v1.ref, {"group": "lobby"}, name="canary", percent=10, bake_s=3600)
    assert fleet.operator("deploy").post(f"/deployments/{canary['id']}/rollback").status_code == 200
    targets = show(fleet, canary["id"])["targets"]
    assert len(targets) == len(devices)
    assert not [t for t in targets if t["status"] == "pending"]
    assert sorted(t["status"] for t in targets) == ["cancelled", "cancelled", "rolled_back"]
