"""Property test of the whole API from its own /openapi.json (schemathesis), against the server as
`edgewise server` runs it (device process; SQLite and PostgreSQL): no input makes a 5xx, and the
device process never restarts. Each generated request goes unsigned, with an operator token, or
(for device endpoints) validly signed by an enrolled device, so the fuzzed bodies reach the work
behind the signature check and not only the check."""

from __future__ import annotations

import json
from typing import Any

import httpx
import hypothesis.strategies as st
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from edgewise.core.auth import signed_headers
from edgewise.core.wire import API_PREFIX
from tests.fleet.conftest import DeviceClient, RunningServer


def _body(kwargs: dict[str, Any]) -> bytes:
    if "json" in kwargs:
        return json.dumps(kwargs.pop("json")).encode()
    data = kwargs.pop("data", None) or kwargs.pop("content", None) or b""
    return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)


def _send(http: httpx.Client, case: schemathesis.Case, base_url: str, as_who: str, admin_token: str,
          device: DeviceClient) -> httpx.Response:
    headers = {"Authorization": f"Bearer {admin_token}"} if as_who == "admin" else {}
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    content = _body(kwargs)
    url = httpx.URL(kwargs.pop("url"), params=kwargs.pop("params", None) or None)
    request_headers = {k: str(v) for k, v in (kwargs.pop("headers", None) or {}).items()}
    if as_who == "device" and url.path.startswith(API_PREFIX + "/device/"):
        request_headers.update(signed_headers(device.device_id, device.key, case.method, url.raw_path.decode(),
                                              content))
    return http.request(case.method, url, content=content, headers=request_headers,
                        cookies=kwargs.pop("cookies", None) or None)


def test_no_generated_request_causes_a_server_error(fleet: RunningServer) -> None:
    schema = schemathesis.openapi.from_url(fleet.url + "/openapi.json")
    # The live stream never ends by design; everything else is fuzzed.
    schema = schema.exclude(path="/api/v1/stream")
    cases = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(GenerationMode.NEGATIVE)
    fleet.ctx.auth_limiter.burst = 1e9  # the fuzzer fails authentication on purpose; it must not be throttled
    device = fleet.device("fuzzed")
    seen: set[str] = set()
    statuses: set[int] = set()
    http = httpx.Client(timeout=15)
    fleet.clients.append(http)

    @settings(max_examples=300, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=cases, as_who=st.sampled_from(["nobody", "admin", "device"]))
    def check(case: schemathesis.Case, as_who: str) -> None:
        try:
            response = _send(http, case, fleet.url, as_who, fleet.admin_token, device)
        except (httpx.LocalProtocolError, httpx.InvalidURL, UnicodeEncodeError):
            return  # a request no HTTP client can send (e.g. a header value h11 refuses): nothing reached the server
        seen.add(f"{case.method} {case.path}")
        statuses.add(response.status_code)
        assert response.status_code < 500, f"{case.method} {case.formatted_path} as {as_who} -> " \
                                            f"{response.status_code}: {response.text[:300]}"

    check()
    assert len(seen) >= 15  # the generator really reached most operations
    assert {200, 401, 422} <= statuses  # accepted, refused unsigned, refused malformed: all three were met
    assert fleet.ctx.device_requests.restarts == 0
    assert device.report(health="ok").status_code == 204
