"""Enrollment: a device trades a one-time (or expiring, or n-use) token and its public key for an id."""

from __future__ import annotations

import secrets
import time
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update

from edgewise.core.errors import AuthError, ConfigError
from edgewise.core.signing import PublicKey
from edgewise.core.wire import AgentConfig, EnrollRequest, EnrollResponse, PublisherKey
from edgewise.fleet.auth import hash_token, new_secret
from edgewise.fleet.db import Database
from edgewise.fleet.db.models import Device, EnrollmentToken
from edgewise.fleet.errors import Conflict, Forbidden
from edgewise.fleet.rollouts.bundles import trusted_keys


def create_enrollment_token(
    db: Database, ttl_s: float | None = 3600.0, uses: int = 1, group: str = "default",
    tags: dict[str, str] | None = None, note: str = "",
) -> tuple[str, EnrollmentToken]:
    """A new enrollment token (the secret is returned once; only its hash is stored)."""
    if uses < 1:
        raise ConfigError("an enrollment token needs at least one use", "pass --uses 1 or more")
    if ttl_s is not None and ttl_s <= 0:
        raise ConfigError("an enrollment token's lifetime must be positive", "pass --ttl in seconds, e.g. 3600")
    token = new_secret("ewe_")
    now = time.time()
    row = EnrollmentToken(
        id=secrets.token_hex(8), token_hash=hash_token(token), created_at=now,
        expires_at=None if ttl_s is None else now + ttl_s, uses_left=uses, group=group, tags=dict(tags or {}),
        note=note,
    )
    with db.session() as session:
        session.add(row)
    return token, row


def _consume(db: Database, token: str, now: float) -> tuple[str, dict[str, Any]]:
    """Use the token once, atomically; the row update is the lock, so two racing devices cannot both win."""
    token_hash = hash_token(token)
    with db.session() as session:
        used = cast(CursorResult[Any], session.execute(  # an UPDATE's result has a row count
            update(EnrollmentToken)
            .where(EnrollmentToken.token_hash == token_hash, EnrollmentToken.uses_left > 0)
            .where(or_(EnrollmentToken.expires_at.is_(None), EnrollmentToken.expires_at > now))
            .values(uses_left=EnrollmentToken.uses_left - 1)
        ))
        if used.rowcount != 1:
            raise AuthError("enrollment token is unknown, used up or expired",
                            "ask an operator for a new one (`edgewise server enroll-token create`)")
        row = session.execute(select(EnrollmentToken.group, EnrollmentToken.tags)
                              .where(EnrollmentToken.token_hash == token_hash)).one()
        return str(row.group), dict(row.tags or {})


def _check_claimed_tags(db: Database, request: EnrollRequest) -> None:
    """A device may repeat tags its token grants, never claim others: tags place devices in rollouts,
    and only an operator (who made the token) may decide which ones a device joins."""
    if not request.tags:
        return
    with db.session(write=False) as session:
        granted = session.scalar(select(EnrollmentToken.tags).where(EnrollmentToken.token_hash
                                                                    == hash_token(request.token)))
    granted = dict(granted or {})
    for key, value in sorted(request.tags.items()):
        if granted.get(key) != value:
            raise Forbidden(f"the device claims tag {key}={value}, which its enrollment token does not grant",
                            "drop the tag from the device, or create a token that grants it "
                            "(`edgewise server enroll-token create --tag KEY=VALUE`)")


def enroll(db: Database, request: EnrollRequest, config: AgentConfig) -> EnrollResponse:
    key = PublicKey.from_b64(request.public_key)  # SignatureError (422) for a malformed key
    now = time.time()
    with db.session() as session:
        taken = session.scalar(select(Device.id).where(Device.public_key == key.b64, Device.revoked.is_(False)))
    if taken is not None:
        raise Conflict("a device with this public key is already enrolled", "generate a new device key to enroll again")
    _check_claimed_tags(db, request)  # before the token is used: a refused claim does not spend a use
    group, token_tags = _consume(db, request.token, now)
    device_id = "dev-" + secrets.token_hex(8)
    with db.session() as session:
        session.add(
            Device(
                id=device_id, name=request.name, public_key=key.b64, group=group,
                tags=token_tags, hardware=request.hardware, agent_version=request.agent_version,
                enrolled_at=now, last_seen=now, reported={}, dropped={},
            )
        )
    keys = [PublisherKey(key_id=k.key_id, public_key=k.b64) for k in trusted_keys(db)]
    return EnrollResponse(device_id=device_id, trusted_publisher_keys=keys, config=config)
