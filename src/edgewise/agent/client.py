"""The device's HTTP client: every request signed with the device key (core.auth), errors turned
into our exception tree, retries with exponential backoff and full jitter."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from edgewise.core.auth import signed_headers
from edgewise.core.errors import AuthError, ProtocolError, ServiceUnavailable
from edgewise.core.signing import PrivateKey
from edgewise.core.wire import API_PREFIX, DesiredState, IngestAck, IngestBatch, ReportedState, parse_wire

DOWNLOAD_CHUNK = 1 << 16
ARCHIVE_SHA_HEADER = "X-Edgewise-Archive-Sha256"


class Backoff:
    """Exponential backoff with full jitter, so a fleet coming back does not retry in lockstep."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None) -> None:
        self.base_s, self.cap_s = base_s, cap_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        self.failures += 1
        return self._rng.uniform(0, min(self.cap_s, self.base_s * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0


class DeviceClient:
    def __init__(
        self, server: str, device_id: str, key: PrivateKey, timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.device_id = device_id
        self._key = key
        self._http = httpx.Client(base_url=self.server, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
              timeout: float | None = None, stream: bool = False) -> httpx.Response:
        prefix = urlsplit(self.server).path.rstrip("/")
        all_headers = signed_headers(self.device_id, self._key, method, prefix + path, body)
        all_headers.update(headers or {})
        if body:
            all_headers["Content-Type"] = "application/json"
        request = self._http.build_request(
            method, path, content=body or None, headers=all_headers,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        try:
            response = self._http.send(request, stream=stream)
        except httpx.HTTPError as error:
            raise ServiceUnavailable(f"{method} {path}: {error.__class__.__name__}: {error}") from None
        if response.status_code >= 400:
            if stream:
                response.read()
            _raise_for(response)
        return response

    def desired_state(self, etag: str | None, wait_s: float = 0.0) -> tuple[DesiredState | None, str | None]:
        """The desired state, or (None, etag) when it has not changed since `etag`."""
        path = f"{API_PREFIX}/device/desired"
        if wait_s > 0:
            path += f"?wait={int(wait_s)}"
        headers = {"If-None-Match": etag} if etag else {}
        response = self._send("GET", path, headers=headers, timeout=wait_s + 10.0)
        if response.status_code == 304:
            return None, etag
        state = parse_wire(DesiredState, response.content, "the server's desired state")
        return state, response.headers.get("ETag", state.revision)

    def report_state(self, state: ReportedState) -> None:
        self._send("PUT", f"{API_PREFIX}/device/state", state.model_dump_json().encode())

    def ingest(self, batch: IngestBatch) -> IngestAck:
        response = self._send("POST", f"{API_PREFIX}/device/ingest", batch.model_dump_json().encode())
        return parse_wire(IngestAck, response.content, "the server's ingest answer")

    def download(self, url: str, dest: Path, progress: Callable[[int], None] | None = None) -> str | None:
        """Download to `dest`, resuming a partial file with an HTTP Range request.

        Returns the archive's sha256 when the server announces it (X-Edgewise-Archive-Sha256)."""
        path = urlsplit(url).path if url.startswith(("http://", "https://")) else url
        if urlsplit(url).query:
            path += "?" + urlsplit(url).query
        have = dest.stat().st_size if dest.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            response = self._send("GET", path, headers=headers, stream=True, timeout=60.0)
        except ProtocolError as error:
            if "416" in error.message and have:
                return None  # already complete; verify checks the content
            raise
        announced: str | None = response.headers.get(ARCHIVE_SHA_HEADER)
        mode = "ab" if response.status_code == 206 else "wb"
        try:
            with open(dest, mode) as handle:
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                    handle.write(chunk)
                    if progress:
                        progress(len(chunk))
        except httpx.HTTPError as error:
            raise ServiceUnavailable(f"download of {url} interrupted: {error}") from None
        finally:
            response.close()
        return announced


def _raise_for(response: httpx.Response) -> None:
    try:
        body = json.loads(response.content)["error"]
        message, fix = body.get("message", ""), body.get("fix") or None
    except (ValueError, KeyError, TypeError):
        message, fix = response.text[:200], None
    text = f"HTTP {response.status_code} {response.request.method} {response.request.url.path}: {message}"
    if response.status_code in (401, 403):
        raise AuthError(text, fix)
    if response.status_code in (502, 503, 504):
        raise ServiceUnavailable(text, fix)
    raise ProtocolError(text, fix)
