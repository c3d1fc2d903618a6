"""A small operator client for the fleet API (the CLI and the demo use it); errors come back as our errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from edgewise.core.errors import AuthError, ConfigError, EdgewiseError, ProtocolError, ServiceUnavailable
from edgewise.core.wire import API_PREFIX

DEFAULT_SERVER = "http://127.0.0.1:8400"


class OperatorClient:
    def __init__(self, server: str, token: str | None, timeout_s: float = 30.0) -> None:
        if not token:
            raise AuthError("no operator token given", "pass --token or set EDGEWISE_TOKEN "
                            "(create one with `edgewise server token create --scope deploy`)")
        self.server = server.rstrip("/")
        self._http = httpx.Client(base_url=self.server + API_PREFIX, timeout=timeout_s,
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ServiceUnavailable(f"cannot reach the fleet server at {self.server}: {error}",
                                     "check --server / EDGEWISE_SERVER and that `edgewise server` runs") from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json() if response.content else None

    def deploy(self, bundle_ref: str, strategy: dict[str, Any]) -> dict[str, Any]:
        return dict(self.call("POST", "/deployments", json={"bundle": bundle_ref, "strategy": strategy}))

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/deployments/{deployment_id}"))

    def devices(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/devices", params={"limit": 1000})["items"])

    def events_of(self, device_id: str) -> list[dict[str, Any]]:
        """Every event of one device, newest first, following the pages to the end."""
        events: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            params: dict[str, Any] = {"device_id": device_id, "limit": 1000}
            if before is not None:
                params["before_id"] = before
            page = self.call("GET", "/events", params=params)
            events.extend(page["items"])
            before = page.get("next_before_id")
            if not before or not page["items"]:
                return events

    def telemetry_of(self, device_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.call("GET", "/telemetry", params={"device_id": device_id, "limit": limit}))

    def stream(self, path: str, **params: Any) -> Iterator[str]:
        """`data:` payloads of a Server-Sent-Events endpoint, until the server closes it."""
        with self._http.stream("GET", path, params=params, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                raise _error_from(response)
            for line in response.iter_lines():
                if line.startswith("data: "):
                    yield line[6:]


def _error_from(response: httpx.Response) -> EdgewiseError:
    try:
        body = response.json()["error"]
        message, fix = str(body["message"]), str(body.get("fix", ""))
    except (ValueError, KeyError, TypeError):
        message, fix = f"HTTP {response.status_code}: {response.text[:200]}", ""
    if response.status_code in (401, 403):
        return AuthError(message, fix or None)
    if response.status_code in (400, 422):
        return ConfigError(message, fix or None)
    if response.status_code >= 500:
        return ServiceUnavailable(message, fix or None)
    return ProtocolError(message, fix or None)
