"""The server's edge: what every HTTP request passes before a route (or its body) is touched.

Pure ASGI middleware, outermost first:

- `FailedAuthGuard`: a source (client address) that keeps failing authentication is answered 429
  at once, body unread, so a hostile client cannot make the server verify signatures or look up
  tokens as fast as it can send; devices and operators that authenticated from that source
  recently keep being served, each within a failure budget of its own. Device requests also have
  their signing headers' shape and clock skew checked here, before the body is read: an unsigned
  100 MB upload is a 401 after its headers.
- `TextGuard`: a path or query string that is not valid UTF-8 or holds a NUL is a 400; no such
  text ever reaches a route, a filter or the database.
- `LimitBodySize`: the body is counted as it streams in, whatever the transfer encoding
  (`Content-Length` or chunked), and refused with 413 at the limit; a declared length over it is
  refused before reading.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import TypeVar
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgewise.core.auth import signing_headers
from edgewise.core.errors import AuthError
from edgewise.core.wire import API_PREFIX
from edgewise.fleet.auth import DASHBOARD_COOKIE
from edgewise.fleet.http_errors import error_response

DEVICE_PREFIX = API_PREFIX + "/device/"


# --- failed authentication, per source ------------------------------------------------------------


Key = TypeVar("Key", str, tuple[str, str])  # a source address, or (source, device identity)


@dataclass
class _Bucket:
    """A budget of failures that refills at `rate` per second up to `burst`."""

    tokens: float
    at: float

    def level(self, burst: float, rate: float, now: float) -> float:
        self.tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now
        return self.tokens


class FailedAuthLimiter:
    """Failures counted per source and per (source, identity); successes make an identity trusted.

    An identity is what a request claims to be: its device id, or a hash of its operator token.
    While a source is over its budget, only identities that authenticated from it within
    `trust_s` are admitted, each while its own budget lasts: a hostile client on a device's NAT
    cannot lock that device out, and cannot spend more than a few checks a second pretending to be it.
    """

    def __init__(self, burst: float = 100, per_s: float = 20, identity_burst: float = 10,
                 identity_per_s: float = 1, trust_s: float = 600, max_entries: int = 50_000) -> None:
        self.burst, self.per_s = burst, per_s
        self.identity_burst, self.identity_per_s = identity_burst, identity_per_s
        self.trust_s, self.max_entries = trust_s, max_entries
        self._sources: dict[str, _Bucket] = {}
        self._identities: dict[tuple[str, str], _Bucket] = {}
        self._trusted: dict[tuple[str, str], float] = {}
        self.refused = 0

    def admits(self, source: str, identity: str | None, now: float) -> bool:
        bucket = self._sources.get(source)
        if bucket is None or bucket.level(self.burst, self.per_s, now) >= 1:
            return True
        if identity is not None and now - self._trusted.get((source, identity), -1e18) < self.trust_s:
            own = self._identities.get((source, identity))
            if own is None or own.level(self.identity_burst, self.identity_per_s, now) >= 1:
                return True
        self.refused += 1
        return False

    def failed(self, source: str, identity: str | None, now: float) -> None:
        self._take(self._sources, source, self.burst, self.per_s, now)
        if identity is not None:
            self._take(self._identities, (source, identity), self.identity_burst, self.identity_per_s, now)

    def succeeded(self, source: str, identity: str | None, now: float) -> None:
        if identity is not None:
            if len(self._trusted) >= self.max_entries:
                self._trusted = {k: t for k, t in self._trusted.items() if now - t < self.trust_s}
            self._trusted[(source, identity)] = now

    def _take(self, buckets: dict[Key, _Bucket], key: Key, burst: float, rate: float, now: float) -> None:
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.max_entries:  # forget the ones that have refilled: they hold nothing
                for stale in [k for k, b in buckets.items() if b.level(burst, rate, now) >= burst]:
                    del buckets[stale]
            bucket = buckets[key] = _Bucket(burst, now)
        bucket.level(burst, rate, now)
        bucket.tokens = max(0.0, bucket.tokens - 1)


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _identity(path: str, headers: dict[str, str]) -> str | None:
    if path.startswith(DEVICE_PREFIX):
        return headers.get("x-edgewise-device", "")[:64] or None
    authorization = headers.get("authorization", "")
    token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
    if not token:
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except CookieError:
            cookies.clear()
        morsel = cookies.get(DASHBOARD_COOKIE)
        token = morsel.value if morsel is not None else ""
    return hashlib.sha256(token.encode()).hexdigest()[:32] if token else None


class FailedAuthGuard:
    def __init__(self, app: ASGIApp, limiter: FailedAuthLimiter | None = None) -> None:
        self.app = app
        self.limiter = limiter or FailedAuthLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(API_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        source = client[0] if client else "-"
        headers = _headers(scope)
        identity = _identity(path, headers)
        now = time.monotonic()
        if not self.limiter.admits(source, identity, now):
            response = error_response(429, "rate_limited", "too many failed authentications from this address",
                                      "check the device key or operator token; retry in a few seconds")
            response.headers["Retry-After"] = "5"
            await response(scope, receive, send)
            return
        if path.startswith(DEVICE_PREFIX):
            try:
                signing_headers(headers)
            except AuthError as error:
                self.limiter.failed(source, identity, time.monotonic())
                await error_response(401, "unauthorized", error.message, error.fix)(scope, receive, send)
                return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if status in (401, 403):
                    self.limiter.failed(source, identity, time.monotonic())
                elif status < 400:
                    self.limiter.succeeded(source, identity, time.monotonic())
            await send(message)

        await self.app(scope, receive, watch)


# --- text in the path and query string -------------------------------------------------------------


def _bad_text(raw: bytes) -> str | None:
    """Why percent-decoded `raw` cannot be text we accept, or None."""
    decoded = unquote_to_bytes(raw.replace(b"+", b" "))
    if b"\x00" in decoded:
        return "contains a NUL character"
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    return None


class TextGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw_path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
            for where, raw in (("path", raw_path), ("query string", scope.get("query_string", b""))):
                problem = _bad_text(raw) if raw else None
                if problem is not None:
                    response = error_response(400, "invalid_request", f"the request's {where} {problem}",
                                              "percent-encode UTF-8 text without NUL characters")
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


# --- body size ---------------------------------------------------------------------------------------


class LimitBodySize:
    """Refuse a body over `max_bytes` with 413: declared, before reading it; streamed, at the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, f"{int(declared)} bytes")
            return
        received = 0
        over = False
        started = False

        async def counted() -> Message:
            nonlocal received, over
            if over:  # whatever the app makes of the first refusal, it gets no more of this body
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over:
                return  # the app answered a body it never had whole: the 413 below replaces it
            started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except BodyTooLarge:
            pass
        if over and not started:
            await self._refuse(scope, receive, send, f"more than {self.max_bytes} bytes")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        response = error_response(413, "too_large", f"request body of {size} is over the {self.max_bytes}-byte "
                                  "limit", "send smaller ingest batches (fewer events or smaller snapshots)")
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


class BodyTooLarge(Exception):  # noqa: N818 - a signal between two layers of this module, not an error to show
    """Raised by the counting `receive` into the app, caught by `LimitBodySize` around it.

    Deliberately not an EdgewiseError: the app answers those itself (a 400) before this
    middleware could turn it into the 413 it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
