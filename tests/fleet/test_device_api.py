"""The device protocol against a real server: enrollment, identity, desired/reported state, ingest, archives."""

from __future__ import annotations

import threading
import time

import pytest

from edgewise.core.auth import signed_headers
from edgewise.core.wire import API_PREFIX, EnrollResponse, IngestAck
from edgewise.fleet.devices.enrollment import create_enrollment_token
from tests.fleet.conftest import DeviceClient, RunningServer


def test_enrollment_returns_id_trusted_keys_and_config(fleet: RunningServer, publisher_key) -> None:
    device = DeviceClient(fleet.url)
    response = device.enroll(fleet.enrollment_token(group="lobby", tags={"site": "paris"}), "cam-1")
    assert response.status_code == 200, response.text
    enrolled = EnrollResponse.model_validate(response.json())
    assert enrolled.device_id.startswith("dev-")
    assert [k.public_key for k in enrolled.trusted_publisher_keys] == [publisher_key.public.b64]
    shown = fleet.operator("read").get(f"/devices/{enrolled.device_id}").json()
    assert (shown["group"], shown["tags"], shown["name"]) == ("lobby", {"site": "paris"}, "cam-1")
    device.http.close()


def test_used_token_is_refused(fleet: RunningServer) -> None:
    token = fleet.enrollment_token(uses=1)
    first, second = DeviceClient(fleet.url), DeviceClient(fleet.url)
    assert first.enroll(token).status_code == 200
    refused = second.enroll(token)
    assert refused.status_code == 401
    assert "used up or expired" in refused.json()["error"]["message"]
    first.http.close(), second.http.close()


def test_expired_token_is_refused(fleet: RunningServer) -> None:
    token, _row = create_enrollment_token(fleet.ctx.db, ttl_s=0.05)
    time.sleep(0.1)
    device = DeviceClient(fleet.url)
    assert device.enroll(token).status_code == 401
    assert device.enroll("ewe_not-a-token").status_code == 401
    device.http.close()


def test_multi_use_token_and_duplicate_key(fleet: RunningServer) -> None:
    token = fleet.enrollment_token(uses=2)
    first = DeviceClient(fleet.url)
    assert first.enroll(token).status_code == 200
    same_key = DeviceClient(fleet.url, key=first.key)
    assert same_key.enroll(token).status_code == 409
    assert DeviceClient(fleet.url).enroll(token).status_code == 200


def test_desired_state_etag_and_long_poll(fleet: RunningServer, bundles) -> None:
    device = fleet.device()
    first = device.desired()
    assert first.status_code == 200 and first.json()["bundle"] is None
    etag = first.headers["ETag"]
    assert device.desired(etag).status_code == 304
    started = time.monotonic()
    assert device.desired(etag, wait=0.5).status_code == 304
    assert time.monotonic() - started >= 0.5 * 0.75 - 0.02  # the server ends a poll in its last quarter (jitter)
    published = bundles.publish()
    deployer = fleet.operator("deploy")
    timer = threading.Timer(0.3, lambda: deployer.post("/deployments", json={
        "bundle": published.ref, "selector": {"ids": [device.device_id]}}))
    timer.start()
    started = time.monotonic()
    changed = device.desired(etag, wait=10)
    assert changed.status_code == 200, changed.text
    assert time.monotonic() - started < 5  # woken by the change, not by the timeout
    timer.join()
    assert changed.json()["bundle"]["digest"] == published.digest
    assert changed.json()["bundle"]["url"] == f"{API_PREFIX}/device/bundles/{published.digest}/archive"


def test_device_cannot_act_as_another(fleet: RunningServer) -> None:
    alice, bob = fleet.device("alice"), fleet.device("bob")
    batch = {"events": [{"seq": 1, "ts": time.time(), "type": "alarm"}]}
    for method, path, body in (("GET", "/device/desired", None), ("PUT", "/device/state", {}),
                               ("POST", "/device/ingest", batch)):
        forged = alice.request(method, path, body, as_device=bob.device_id)  # Alice's key, Bob's id
        assert forged.status_code == 401, (path, forged.text)
    assert alice.request("POST", "/device/ingest", batch).status_code == 200
    reader = fleet.operator("read")
    assert reader.get("/events", params={"device_id": bob.device_id}).json()["items"] == []
    assert len(reader.get("/events", params={"device_id": alice.device_id}).json()["items"]) == 1
    assert reader.get(f"/devices/{bob.device_id}").json()["last_seen"] is not None  # enrolled, untouched
    assert reader.get(f"/devices/{bob.device_id}").json()["reported"] == {}


def test_unsigned_tampered_and_replayed_requests_are_refused(fleet: RunningServer) -> None:
    device = fleet.device()
    assert device.http.get(f"{API_PREFIX}/device/desired").status_code == 401
    content = b'{"agent_version": "1"}'
    headers = signed_headers(device.device_id, device.key, "PUT", f"{API_PREFIX}/device/state", content)
    headers["Content-Type"] = "application/json"
    tampered = device.http.put(f"{API_PREFIX}/device/state", content=b'{"agent_version": "2"}', headers=headers)
    assert tampered.status_code == 401
    # The refused forgery did not burn the nonce: the genuine request still goes through, once.
    assert device.http.put(f"{API_PREFIX}/device/state", content=content, headers=headers).status_code == 204
    replay = device.http.put(f"{API_PREFIX}/device/state", content=content, headers=headers)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]["message"]
    old = signed_headers(device.device_id, device.key, "GET", f"{API_PREFIX}/device/desired", b"",
                         now=time.time() - 3600)
    assert device.http.get(f"{API_PREFIX}/device/desired", headers=old).status_code == 401


def test_revoked_device_is_refused_at_once(fleet: RunningServer) -> None:
    device = fleet.device()
    assert device.report().status_code == 204
    assert fleet.operator("admin").post(f"/devices/{device.device_id}/revoke").status_code == 200
    for response in (device.report(), device.desired(), device.request("POST", "/device/ingest", {})):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


def test_reported_state_is_stored(fleet: RunningServer, bundles) -> None:
    device = fleet.device()
    published = bundles.publish()
    assert device.report(current=published, health="ok").status_code == 204
    shown = fleet.operator("read").get(f"/devices/{device.device_id}").json()
    assert shown["online"] is True
    assert (shown["current_version"], shown["health"]) == ("1.0.0", "ok")
    assert shown["reported"]["agent_version"] == "0.1.0"
    bad = device.request("PUT", "/device/state", {"health": {"status": "splendid"}})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_retried_ingest_batch_is_stored_once(fleet: RunningServer) -> None:
    device = fleet.device()
    now = time.time()
    batch = {
        "events": [{"seq": i, "ts": now + i, "type": "detection", "label": "person", "score": 0.9,
                    "bundle_name": "doorcam", "bundle_version": "1.2.0"} for i in range(5)],
        "telemetry": [{"seq": 100 + i, "ts": now + i, "fps": 25.0, "cpu_percent": 40.0, "bundle_name": "doorcam",
                       "model_version": "1.2.0"} for i in range(3)],
        "dropped": {"telemetry": 2},
    }
    first = IngestAck.model_validate(device.request("POST", "/device/ingest", batch).json())
    assert first.acked == [0, 1, 2, 3, 4, 100, 101, 102] and first.duplicates == 0
    batch["events"].append({"seq": 5, "ts": now + 5, "type": "alarm", "priority": "alarm"})
    retried = IngestAck.model_validate(device.request("POST", "/device/ingest", batch).json())
    assert retried.duplicates == 8 and 5 in retried.acked
    reader = fleet.operator("read")
    events = reader.get("/events", params={"device_id": device.device_id}).json()["items"]
    assert sorted(e["seq"] for e in events) == [0, 1, 2, 3, 4, 5]
    telemetry = reader.get("/telemetry", params={"device_id": device.device_id}).json()
    assert [t["seq"] for t in telemetry] == [100, 101, 102]
    assert {(e["bundle_name"], e["bundle_version"]) for e in events if e["seq"] < 5} == {("doorcam", "1.2.0")}
    assert {(t["bundle_name"], t["model_version"]) for t in telemetry} == {("doorcam", "1.2.0")}
    assert reader.get(f"/devices/{device.device_id}").json()["dropped"] == {"telemetry": 2}


def test_events_filter_page_and_snapshot(fleet: RunningServer) -> None:
    import base64

    device = fleet.device()
    jpeg = b"\xff\xd8\xff\xe0fakejpeg\xff\xd9"
    events = [{"seq": i, "ts": 1000.0 + i, "type": "alarm" if i % 2 else "detection",
               "priority": "alarm" if i % 2 else "event"} for i in range(10)]
    events[3]["snapshot_jpeg_b64"] = base64.b64encode(jpeg).decode()
    assert device.request("POST", "/device/ingest", {"events": events}).status_code == 200
    reader = fleet.operator("read")
    page = reader.get("/events", params={"type": "alarm", "limit": 3}).json()
    assert [e["seq"] for e in page["items"]] == [9, 7, 5]
    rest = reader.get("/events", params={"type": "alarm", "limit": 3, "before_id": page["next_before_id"]}).json()
    assert [e["seq"] for e in rest["items"]] == [3, 1] and rest["next_before_id"] is None
    with_snapshot = next(e for e in rest["items"] if e["seq"] == 3)
    assert with_snapshot["has_snapshot"] is True
    assert reader.get(f"/events/{with_snapshot['id']}/snapshot").content == jpeg
    bad = device.request("POST", "/device/ingest", {"events": [{"seq": 50, "ts": 1.0, "type": "x",
                                                                 "snapshot_jpeg_b64": "not base64!"}]})
    assert bad.status_code == 400


def test_archive_is_served_with_ranges(fleet: RunningServer, bundles) -> None:
    device = fleet.device()
    published = bundles.publish()
    assert fleet.operator("deploy").post("/bundles", json={"ref": published.ref}).status_code == 200
    path = f"/device/bundles/{published.digest}/archive"
    whole = device.request("GET", path)
    assert whole.status_code == 200
    expected = bundles.store.archive_path(published.ref).read_bytes()
    assert whole.content == expected
    part = device.request("GET", path, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == expected[10:100]
    assert device.request("GET", "/device/bundles/sha256:" + "0" * 64 + "/archive").status_code == 404
    assert DeviceClient(fleet.url).http.get(API_PREFIX + path).status_code == 401


@pytest.mark.parametrize("method,path", [("GET", "/devices"), ("GET", "/deployments"), ("GET", "/events"),
                                         ("GET", "/telemetry"), ("GET", "/bundles"), ("POST", "/deployments"),
                                         ("POST", "/enrollment-tokens"), ("GET", "/fleet/summary")])
def test_operator_endpoints_need_a_token(sqlite_fleet: RunningServer, method: str, path: str) -> None:
    client = sqlite_fleet.operator("read")
    anonymous = client.request(method, path, headers={"Authorization": ""}, json={} if method == "POST" else None)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    wrong = client.request(method, path, headers={"Authorization": "Bearer ewo_wrong"},
                           json={} if method == "POST" else None)
    assert wrong.status_code == 401


def test_scopes_are_enforced(sqlite_fleet: RunningServer) -> None:
    reader, deployer = sqlite_fleet.operator("read"), sqlite_fleet.operator("deploy")
    assert reader.get("/devices").status_code == 200
    assert reader.post("/deployments", json={"bundle": "x:1"}).status_code == 403
    assert deployer.post("/enrollment-tokens", json={}).status_code == 403
    assert deployer.post("/devices/dev-x/revoke").status_code == 403
    assert sqlite_fleet.operator("admin").post("/enrollment-tokens", json={}).status_code == 201


def test_error_shape_is_pinned(sqlite_fleet: RunningServer) -> None:
    client = sqlite_fleet.operator("admin")
    for response, status in ((client.get("/devices/dev-missing"), 404), (client.get("/nothing-here"), 404),
                             (client.post("/enrollment-tokens", json={"uses": 0}), 422),
                             (client.get("/devices", headers={"Authorization": ""}), 401),
                             (client.delete("/devices"), 405)):
        assert response.status_code == status
        body = response.json()
        assert list(body) == ["error"]
        assert set(body["error"]) == {"code", "message", "fix"}
        assert body["error"]["message"]


def test_oversized_body_is_refused_with_the_error_shape(tmp_path, publisher_key) -> None:
    from tests.fleet.conftest import make_settings, start_server

    fleet = start_server(make_settings(f"sqlite:///{tmp_path / 'f.db'}", tmp_path, publisher_key,
                                       max_body_bytes=2000))
    try:
        device = fleet.device()
        events = [{"seq": i, "ts": 1.0, "type": "detection", "label": "x" * 50} for i in range(100)]
        refused = device.request("POST", "/device/ingest", {"events": events})
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "too_large"
        assert device.request("POST", "/device/ingest", {"events": events[:5]}).status_code == 200
    finally:
        fleet.stop()
