"""Who is calling: operators by scoped bearer token (stored hashed), devices by signed request.

Device requests are checked with `edgewise.core.auth.verify_signed_request` against the key the
device enrolled with; each nonce is accepted once within the clock-skew window (replay cache), and
the device row is read on every request so a revoked device is refused at once.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from anyio import to_thread
from sqlalchemy import Connection, Select, Table, select
from sqlalchemy.orm import Session

from edgewise.core.auth import claimed_device, verify_signed_request
from edgewise.core.errors import AuthError, ConfigError
from edgewise.core.signing import PublicKey
from edgewise.core.wire import MAX_CLOCK_SKEW_S
from edgewise.fleet.db import Database
from edgewise.fleet.db.ids import dialect_of, ids_match
from edgewise.fleet.db.models import Device, OperatorToken
from edgewise.fleet.errors import Forbidden

if TYPE_CHECKING:  # the device process imports this module, and needs no web framework
    from fastapi import Request

_DEVICES = cast(Table, Device.__table__)


@functools.cache
def _lookup_statement(dialect: str) -> Select[Any]:
    """Built once per database: it runs for every batch of device requests (Core, no ORM layer)."""
    return select(_DEVICES.c.id, _DEVICES.c.public_key, _DEVICES.c.revoked, _DEVICES.c.device_group).where(
        ids_match(_DEVICES.c.id, dialect))

SCOPES = ("read", "deploy", "admin")
DASHBOARD_COOKIE = "edgewise_token"


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings, so one unsalted sha256 cannot be brute-forced back.
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope {scope!r}", f"use one of: {', '.join(SCOPES)}")
    return scope


def scope_allows(granted: str, needed: str) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)


@dataclass(frozen=True)
class Operator:
    token_id: str
    name: str
    scope: str


def create_operator_token(db: Database, scope: str, name: str = "") -> str:
    """A new operator token with `scope`; the secret is returned once and only its hash is stored."""
    check_scope(scope)
    token = new_secret("ewo_")
    with db.session() as session:
        session.add(
            OperatorToken(
                id=secrets.token_hex(8), name=name, token_hash=hash_token(token), scope=scope, created_at=time.time()
            )
        )
    return token


def operator_from_token(db: Database, token: str | None, needed: str) -> Operator:
    if not token:
        raise AuthError("an operator token is required", "send `Authorization: Bearer <token>` "
                        "(create one with `edgewise server token create`)")
    with db.session(write=False) as session:
        row = session.scalar(select(OperatorToken).where(OperatorToken.token_hash == hash_token(token)))
    if row is None or row.revoked:
        raise AuthError("operator token is unknown or revoked", "create one with `edgewise server token create`")
    if not scope_allows(row.scope, needed):
        raise Forbidden(f"this token has scope {row.scope!r}; the request needs {needed!r}")
    return Operator(row.id, row.name, row.scope)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(DASHBOARD_COOKIE)


class NonceCache:
    """Nonces seen within the skew window; a second use of one is a replay."""

    def __init__(self, window_s: float = 2 * MAX_CLOCK_SKEW_S) -> None:
        self.window_s = window_s
        self._seen: dict[str, float] = {}
        self._next_purge = 0.0

    def check_and_add(self, device_id: str, nonce: str, now: float) -> None:
        if now >= self._next_purge:
            self._seen = {key: expiry for key, expiry in self._seen.items() if expiry > now}
            self._next_purge = now + 10.0
        key = f"{device_id}:{nonce}"
        if key in self._seen:
            raise AuthError("request nonce was already used (replayed request)", "sign each request anew")
        self._seen[key] = now + self.window_s


@functools.lru_cache(maxsize=4096)
def _public_key(b64: str) -> PublicKey:
    return PublicKey.from_b64(b64)  # parsed once per device, not on each of its requests


@dataclass(frozen=True)
class AuthedDevice:
    id: str
    group: str


@dataclass(frozen=True)
class SignedRequest:
    """What a device request's signature covers, read on the event loop and checked in a worker."""

    device_id: str
    method: str
    path_with_query: str
    headers: dict[str, str]
    body: bytes


class DeviceAuthenticator:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.nonces = NonceCache()
        self._nonce_lock = threading.Lock()

    @staticmethod
    async def read(request: Request) -> SignedRequest:
        device_id = claimed_device(request.headers)
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string", b"")
        path_with_query = raw_path.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
        return SignedRequest(device_id, request.method, path_with_query, dict(request.headers.items()),
                             await request.body())

    def _lookup(self, device_id: str) -> tuple[str, bool, str] | None:
        # A plain connection, not an ORM session: this runs on every device request.
        with self.db.engine.connect() as connection:
            return self.lookup_many(connection, [device_id]).get(device_id)

    @staticmethod
    def lookup_many(connection: Connection | Session, device_ids: list[str]) -> dict[str, tuple[str, bool, str]]:
        """device id -> (public key, revoked, group), for the ids that exist."""
        ids = sorted({d for d in device_ids if len(d) <= 40})
        if not ids:
            return {}
        statement = _lookup_statement(dialect_of(connection))
        return {row[0]: (row[1], row[2], row[3]) for row in connection.execute(statement, {"ids": ids})}

    def verify(self, signed: SignedRequest) -> AuthedDevice:
        """Blocking (one database read): call it from a worker thread, with the request's own work."""
        return self.check(signed, self._lookup(signed.device_id))

    def check(self, signed: SignedRequest, found: tuple[str, bool, str] | None, nonce: bool = True
              ) -> AuthedDevice:
        """Verify `signed` against its device's row (`found`); `nonce=False` when it was already counted."""
        if found is None:
            raise AuthError("unknown device", "enroll the device first")
        public_key, revoked, group = found
        if revoked:
            raise Forbidden("this device has been revoked", "ask an operator; enroll again with a new token")
        seen = verify_signed_request(_public_key(public_key), signed.method, signed.path_with_query,
                                     signed.headers, signed.body)
        if nonce:
            with self._nonce_lock:
                self.nonces.check_and_add(signed.device_id, seen, time.time())
        return AuthedDevice(signed.device_id, group)

    async def authenticate(self, request: Request) -> AuthedDevice:
        signed = await self.read(request)
        return await to_thread.run_sync(self.verify, signed)
