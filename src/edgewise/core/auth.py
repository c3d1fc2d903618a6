"""Device request signing, the one implementation both sides use (see `wire.py` for the scheme)."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Mapping

from edgewise.core.errors import AuthError
from edgewise.core.signing import PrivateKey, PublicKey
from edgewise.core.wire import (
    HEADER_DEVICE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    MAX_CLOCK_SKEW_S,
    request_signing_bytes,
)


def signed_headers(
    device_id: str, key: PrivateKey, method: str, path_with_query: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """Headers that authenticate one request as `device_id`."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(16)
    signature = key.sign(request_signing_bytes(method, path_with_query, timestamp, nonce, body))
    return {
        HEADER_DEVICE: device_id,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: base64.b64encode(signature).decode(),
    }


def claimed_device(headers: Mapping[str, str]) -> str:
    device_id = headers.get(HEADER_DEVICE) or headers.get(HEADER_DEVICE.lower())
    if not device_id:
        raise AuthError("request is not signed by a device", "send the X-Edgewise-* headers (enroll first)")
    return device_id


def verify_signed_request(
    public_key: PublicKey,
    method: str,
    path_with_query: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
) -> str:
    """Check the signature and clock skew; returns the nonce so the caller can refuse a replay."""

    def header(name: str) -> str:
        value = headers.get(name) or headers.get(name.lower())
        if not value:
            raise AuthError(f"missing header {name}", "sign every device request (edgewise.core.auth)")
        return value

    timestamp = header(HEADER_TIMESTAMP)
    nonce = header(HEADER_NONCE)
    try:
        sent_at = int(timestamp)
        signature = base64.b64decode(header(HEADER_SIGNATURE), validate=True)
    except ValueError:
        raise AuthError("malformed timestamp or signature header", "sign requests with edgewise.core.auth") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > MAX_CLOCK_SKEW_S:
        raise AuthError("request timestamp is too far from the server's clock", "synchronise the device clock (NTP)")
    if not public_key.verify(signature, request_signing_bytes(method, path_with_query, timestamp, nonce, body)):
        raise AuthError("device signature does not verify", "the device key does not match its enrollment")
    return nonce
