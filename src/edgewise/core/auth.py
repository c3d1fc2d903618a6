"""Device request signing, the one implementation both sides use (see `wire.py` for the scheme)."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

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


# The shapes of the signing headers, checked before anything else (the body is not even read):
# bounded, so no header value reaches arithmetic, a database or a signature check unbounded.
_DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[0-9A-Za-z_-]{8,128}")
_SIGNATURE_B64 = re.compile(r"[A-Za-z0-9+/]{86}==")  # an ed25519 signature is 64 bytes


@dataclass(frozen=True)
class SigningHeaders:
    device_id: str
    timestamp: str
    nonce: str
    signature: bytes


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name) or headers.get(name.lower())
    if not value:
        raise AuthError(f"missing header {name}", "sign every device request (edgewise.core.auth)")
    return value


def claimed_device(headers: Mapping[str, str]) -> str:
    device_id = headers.get(HEADER_DEVICE) or headers.get(HEADER_DEVICE.lower())
    if not device_id:
        raise AuthError("request is not signed by a device", "send the X-Edgewise-* headers (enroll first)")
    if not _DEVICE_ID.fullmatch(device_id):
        raise AuthError(f"malformed {HEADER_DEVICE} header", "send the device id enrollment returned")
    return device_id


def signing_headers(headers: Mapping[str, str], now: float | None = None) -> SigningHeaders:
    """The four signing headers, each of the right shape, and a timestamp within the clock skew."""
    device_id = claimed_device(headers)
    timestamp, nonce = _header(headers, HEADER_TIMESTAMP), _header(headers, HEADER_NONCE)
    signature_b64 = _header(headers, HEADER_SIGNATURE)
    if not (_TIMESTAMP.fullmatch(timestamp) and _NONCE.fullmatch(nonce) and _SIGNATURE_B64.fullmatch(signature_b64)):
        raise AuthError("malformed timestamp, nonce or signature header", "sign requests with edgewise.core.auth")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, binascii.Error):
        raise AuthError("malformed signature header", "sign requests with edgewise.core.auth") from None
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > MAX_CLOCK_SKEW_S:
        raise AuthError("request timestamp is too far from the server's clock", "synchronise the device clock (NTP)")
    return SigningHeaders(device_id, timestamp, nonce, signature)


def verify_signed_request(
    public_key: PublicKey,
    method: str,
    path_with_query: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
) -> str:
    """Check the headers, the signature and clock skew; returns the nonce so the caller can refuse a replay."""
    signed = signing_headers(headers, now)
    message = request_signing_bytes(method, path_with_query, signed.timestamp, signed.nonce, body)
    if not public_key.verify(signed.signature, message):
        raise AuthError("device signature does not verify", "the device key does not match its enrollment")
    return signed.nonce
