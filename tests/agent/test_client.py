from __future__ import annotations

import random

import httpx
import pytest

from edgewise.agent.client import Backoff, DeviceClient
from edgewise.core.auth import verify_signed_request
from edgewise.core.errors import AuthError, ProtocolError, ServiceUnavailable
from edgewise.core.signing import PrivateKey
from edgewise.core.wire import DesiredState, IngestBatch

ARCHIVE = bytes(range(256)) * 40


def fake_server(key: PrivateKey, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        verify_signed_request(key.public, request.method, request.url.raw_path.decode(), request.headers,
                              request.content)
        path = request.url.path
        if path.endswith("/archive"):
            start = int(request.headers.get("Range", "bytes=0-")[6:].rstrip("-"))
            return httpx.Response(206 if start else 200, content=ARCHIVE[start:],
                                  headers={"X-Edgewise-Archive-Sha256": "abc"})
        if path.endswith("/desired"):
            if request.headers.get("If-None-Match") == '"r1"':
                return httpx.Response(304)
            return httpx.Response(200, json=DesiredState(device_id="d", revision="r1").model_dump(),
                                  headers={"ETag": '"r1"'})
        if path.endswith("/ingest"):
            return httpx.Response(401, json={"error": {"code": "auth", "message": "revoked", "fix": "enroll"}})
        return httpx.Response(503, text="busy")

    return httpx.MockTransport(handle)


def test_signed_requests_resume_downloads_and_honour_etags(tmp_path) -> None:
    key, seen = PrivateKey.generate(), []
    client = DeviceClient("http://server", "dev-1", key, transport=fake_server(key, seen))
    partial = tmp_path / "bundle.tar"
    partial.write_bytes(ARCHIVE[:1000])
    assert client.download("/api/v1/device/bundles/sha256:x/archive", partial) == "abc"
    assert seen[-1].headers["Range"] == "bytes=1000-"
    assert partial.read_bytes() == ARCHIVE
    state, etag = client.desired_state(None)
    assert state is not None and etag == '"r1"'
    assert client.desired_state(etag, wait_s=1) == (None, '"r1"')
    assert "wait=1" in str(seen[-1].url)


def test_errors_map_to_our_tree() -> None:
    key = PrivateKey.generate()
    client = DeviceClient("http://server", "dev-1", key, transport=fake_server(key, []))
    with pytest.raises(AuthError, match="revoked") as caught:
        client.ingest(IngestBatch())
    assert caught.value.fix == "enroll"
    with pytest.raises(ServiceUnavailable, match="503"):
        client.report_state.__self__._send("GET", "/elsewhere")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    offline = DeviceClient("http://server", "dev-1", key, transport=httpx.MockTransport(refuse))
    with pytest.raises(ServiceUnavailable, match="ConnectError"):
        offline.desired_state(None)
    assert issubclass(AuthError, ProtocolError)


def test_backoff_grows_with_full_jitter_and_is_capped() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, rng=random.Random(0))
    delays = [backoff.next_delay() for _ in range(10)]
    assert all(0 <= d <= 8.0 for d in delays)
    assert max(delays[5:]) > 1.0  # later failures can wait longer than the first
    backoff.reset()
    assert backoff.next_delay() <= 1.0
