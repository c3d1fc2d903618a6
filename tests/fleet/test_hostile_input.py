"""Hostile and mistaken input against the real server (device process, SQLite and PostgreSQL):
every case is a 4xx in the one error shape, nothing is stored, and the device process never restarts."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from edgewise.core.auth import signed_headers
from edgewise.core.errors import InternalError
from edgewise.core.wire import API_PREFIX, HEADER_TIMESTAMP
from edgewise.fleet.gateway.device_process import portable
from tests.fleet.conftest import DeviceClient, RunningServer


def _events_stored(fleet: RunningServer) -> int:
    return len(fleet.operator("read").get("/events", params={"limit": 1000}).json()["items"])


def _assert_error_shape(response: httpx.Response, status: int | tuple[int, ...]) -> None:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, f"{response.status_code}: {response.text[:300]}"
    error = response.json()["error"]
    assert error["code"] and error["message"]


def test_a_400_digit_timestamp_is_a_401_and_the_device_process_lives_on(fleet: RunningServer) -> None:
    device = fleet.device()
    for _ in range(3):
        body = b'{"health": {"status": "ok"}}'
        headers = signed_headers(device.device_id, device.key, "PUT", API_PREFIX + "/device/state", body)
        headers[HEADER_TIMESTAMP] = "9" * 400
        response = device.http.put(API_PREFIX + "/device/state", content=body,
                                   headers={**headers, "Content-Type": "application/json"})
        _assert_error_shape(response, 401)
        assert "malformed" in response.json()["error"]["message"]
    assert device.report(health="ok").status_code == 204
    assert fleet.ctx.device_requests.restarts == 0


def test_an_error_class_of_main_crosses_as_an_internal_error() -> None:
    # The device process runs as `python -m`: a class it defines lives in `__main__`, which the
    # server cannot unpickle. Such errors cross by name, so the link (and every device) survives.
    stray = type("Stray", (Exception,), {"__module__": "__main__"})
    crossed = portable(stray("boom"))
    assert isinstance(crossed, InternalError) and crossed.kind == "Stray"
    import pickle

    assert pickle.loads(pickle.dumps(crossed)).kind == "Stray"


def _signed_raw(device: DeviceClient, method: str, path: str, body: bytes) -> httpx.Response:
    headers = signed_headers(device.device_id, device.key, method, API_PREFIX + path, body)
    return device.http.request(method, API_PREFIX + path, content=body,
                               headers={**headers, "Content-Type": "application/json"})


HOSTILE_INGEST = {
    "seq at 2^63": '{"events": [{"seq": 9223372036854775808, "ts": 1.0, "type": "x"}]}',
    "seq of 400 digits": '{"events": [{"seq": ' + "9" * 400 + ', "ts": 1.0, "type": "x"}]}',
    "NaN timestamp": '{"events": [{"seq": 1, "ts": NaN, "type": "x"}]}',
    "infinite timestamp": '{"events": [{"seq": 1, "ts": 1e999, "type": "x"}]}',
    "lone surrogate": '{"events": [{"seq": 1, "ts": 1.0, "type": "\\ud800"}]}',
    "NUL in a label": '{"events": [{"seq": 1, "ts": 1.0, "type": "x", "label": "a\\u0000b"}]}',
    "5 MB type name": '{"events": [{"seq": 1, "ts": 1.0, "type": "' + "x" * (5 << 20) + '"}]}',
    "duplicate keys": '{"events": [{"seq": 1, "seq": 2, "ts": 1.0, "type": "x"}]}',
    "nested 900 deep": '{"events": [{"seq": 1, "ts": 1.0, "type": "x", "data": {"a": '
                       + "[" * 900 + "]" * 900 + "}}]}",
    "nested 100k deep": '{"events": [{"seq": 1, "ts": 1.0, "type": "x", "data": {"a": '
                        + "[" * 100_000 + "]" * 100_000 + "}}]}",
    "too many events": json.dumps({"events": [{"seq": i, "ts": 1.0, "type": "x"} for i in range(1001)]}),
    "not UTF-8": b'{"events": [{"seq": 1, "ts": 1.0, "type": "\xff"}]}',
}


@pytest.mark.parametrize("case", list(HOSTILE_INGEST))
def test_hostile_ingest_is_refused_and_nothing_is_stored(fleet: RunningServer, case: str) -> None:
    device = fleet.device()
    body = HOSTILE_INGEST[case]
    response = _signed_raw(device, "POST", "/device/ingest", body if isinstance(body, bytes) else body.encode())
    _assert_error_shape(response, (413, 422))
    assert _events_stored(fleet) == 0
    assert device.report(health="ok").status_code == 204  # the same device is served right after
    assert fleet.ctx.device_requests.restarts == 0


@pytest.mark.parametrize("path_and_query", [
    "/events?before_id=" + "9" * 30,
    "/events?after_id=9223372036854775808",
    "/events?since=nan",
    "/events?until=inf",
    "/events?device_id=dev-%00",
    "/events?label=%ED%B2%80",  # a lone surrogate, as UTF-8 would write it (invalid UTF-8)
    "/events?label=%FF",
    "/devices?offset=" + "9" * 30,
    "/devices?group=a%00b",
    "/events/99999999999999999999999/snapshot",
    "/devices/dev-%00",
])
def test_hostile_operator_queries_are_4xx(fleet: RunningServer, path_and_query: str) -> None:
    operator = fleet.operator("read")
    response = httpx.get(fleet.url + API_PREFIX + path_and_query, headers=operator.headers)
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    assert response.json()["error"]["code"]


def _chunks(total: int, chunk: bytes) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield chunk
        sent += len(chunk)


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.parametrize("signed", [False, True])
def test_a_chunked_100_mb_upload_is_413_without_growing_the_server(fleet: RunningServer, signed: bool) -> None:
    device = fleet.device()
    chunk = b'{"events": [' + b" " * ((1 << 20) - 12)
    headers = {"Content-Type": "application/json"}
    if signed:  # a valid signature over the whole 100 MB: only the size limit stops it
        import hashlib

        from edgewise.core.wire import request_signing_bytes
        total = hashlib.sha256()
        for piece in _chunks(100 << 20, chunk):
            total.update(piece)
        stamp, nonce = str(int(time.time())), os.urandom(16).hex()
        message = request_signing_bytes("POST", API_PREFIX + "/device/ingest", stamp, nonce, b"")
        # request_signing_bytes hashes its body argument: rebuild it with the streamed hash instead
        message = message.rsplit(b"\n", 1)[0] + b"\n" + total.hexdigest().encode()
        import base64
        headers.update({"X-Edgewise-Device": device.device_id, "X-Edgewise-Timestamp": stamp,
                        "X-Edgewise-Nonce": nonce,
                        "X-Edgewise-Signature": base64.b64encode(device.key.sign(message)).decode()})
    before = _rss_mb()
    with httpx.Client(timeout=60) as client:
        try:
            response = client.post(fleet.url + API_PREFIX + "/device/ingest", headers=headers,
                                   content=_chunks(100 << 20, chunk))
            status = response.status_code
        except httpx.HTTPError:  # the server may close the connection after answering
            status = 413
    grown = _rss_mb() - before
    assert status == (413 if signed else 401)
    assert grown < 50, f"the server grew by {grown:.0f} MB"
    assert _events_stored(fleet) == 0
    assert device.report(health="ok").status_code == 204


def test_an_unsigned_body_is_refused_before_it_is_read(fleet: RunningServer) -> None:
    response = httpx.post(fleet.url + API_PREFIX + "/device/ingest", content=b"x" * (4 << 20),
                          headers={"Content-Type": "application/json"}, timeout=30)
    _assert_error_shape(response, 401)
    assert "not signed" in response.json()["error"]["message"]


def test_a_source_that_keeps_failing_is_slowed_but_its_devices_are_served(fleet: RunningServer) -> None:
    fleet.ctx.auth_limiter.per_s = 0.2  # so the budget cannot refill between the steps below
    device = fleet.device()
    assert device.report(health="ok").status_code == 204  # proven from this address
    statuses = set()
    with httpx.Client(base_url=fleet.url, timeout=10) as hostile:
        for _ in range(300):
            statuses.add(hostile.put(API_PREFIX + "/device/state", content=b"{}",
                                     headers={"X-Edgewise-Device": "dev-nobody", HEADER_TIMESTAMP: "1"}).status_code)
    assert statuses == {401, 429}
    assert device.report(health="ok").status_code == 204  # a device proven from here keeps its service
    stranger = DeviceClient(fleet.url)
    stranger.device_id = "dev-0000000000000000"
    refused = stranger.report(health="ok")
    assert refused.status_code == 429 and refused.headers["Retry-After"]


def test_a_device_may_not_claim_tags_its_token_does_not_grant(fleet: RunningServer) -> None:
    token = fleet.enrollment_token(group="lobby", tags={"site": "paris"}, uses=2)
    claimer = DeviceClient(fleet.url)
    refused = claimer.enroll(token, "cam-x", tags={"site": "berlin"})
    _assert_error_shape(refused, 403)
    assert "site=berlin" in refused.json()["error"]["message"]
    extra = DeviceClient(fleet.url).enroll(token, "cam-y", tags={"canary": "yes"})
    _assert_error_shape(extra, 403)
    honest = DeviceClient(fleet.url)
    assert honest.enroll(token, "cam-z", tags={"site": "paris"}).status_code == 200  # the refusals spent no use
    assert DeviceClient(fleet.url).enroll(token, "cam-w").status_code == 200
    shown = fleet.operator("read").get(f"/devices/{honest.device_id}").json()
    assert (shown["group"], shown["tags"]) == ("lobby", {"site": "paris"})
