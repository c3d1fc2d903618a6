"""The server's own errors and the HTTP status and code each error class answers with.

No web framework here: the domain (devices, rollouts) and the device process raise these; the
handlers that turn them into responses are in `fleet/http_errors.py`.
"""

from __future__ import annotations

from edgewise.core.errors import (
    AuthError,
    ConfigError,
    EdgewiseError,
    InternalError,
    InvalidBundle,
    ProtocolError,
    RegistryError,
    ServiceUnavailable,
)


class Forbidden(AuthError):
    """Authenticated, but not allowed (wrong scope, another device's data)."""

    default_fix = "use a token with the needed scope (read < deploy < admin)"


class NotFound(ProtocolError):
    default_fix = "check the id; list what exists with the matching `list` command"


class Conflict(ProtocolError):
    default_fix = "reload the resource and retry with its current state"


# Most specific first: the first matching class decides the status and code.
_STATUS: list[tuple[type[EdgewiseError], int, str]] = [
    (Forbidden, 403, "forbidden"),
    (AuthError, 401, "unauthorized"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (InvalidBundle, 422, "invalid_bundle"),
    (RegistryError, 404, "registry"),
    (ConfigError, 400, "bad_request"),
    (ServiceUnavailable, 503, "unavailable"),
    (InternalError, 500, "internal"),
    (ProtocolError, 400, "protocol"),
    (EdgewiseError, 400, "error"),
]


def status_of(error: EdgewiseError) -> tuple[int, str]:
    for error_type, status, code in _STATUS:
        if isinstance(error, error_type):
            return status, code
    return 400, "error"
