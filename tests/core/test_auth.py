from __future__ import annotations

import pytest

from edgewise.core.auth import signed_headers, verify_signed_request
from edgewise.core.errors import AuthError
from edgewise.core.signing import PrivateKey


def test_signed_request_verifies_and_any_change_is_refused() -> None:
    key = PrivateKey.generate()
    headers = signed_headers("dev-1", key, "POST", "/api/v1/device/ingest", b'{"a":1}', now=1000)
    nonce = verify_signed_request(key.public, "POST", "/api/v1/device/ingest", headers, b'{"a":1}', now=1001)
    assert nonce == headers["X-Edgewise-Nonce"]
    with pytest.raises(AuthError, match="does not verify"):
        verify_signed_request(key.public, "POST", "/api/v1/device/ingest", headers, b'{"a":2}', now=1001)
    with pytest.raises(AuthError, match="does not verify"):
        verify_signed_request(key.public, "POST", "/api/v1/device/state", headers, b'{"a":1}', now=1001)
    with pytest.raises(AuthError, match="does not verify"):
        verify_signed_request(PrivateKey.generate().public, "POST", "/api/v1/device/ingest", headers, b'{"a":1}', 1001)
    with pytest.raises(AuthError, match="clock"):
        verify_signed_request(key.public, "POST", "/api/v1/device/ingest", headers, b'{"a":1}', now=5000)
