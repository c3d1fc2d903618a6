"""Operator authentication as a FastAPI dependency: `Depends(require("deploy"))`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from edgewise.core.wire import ErrorResponse
from edgewise.fleet.auth import Operator, bearer_token, operator_from_token
from edgewise.fleet.context import context_of

bearer_scheme = HTTPBearer(auto_error=False, description="operator token (`edgewise server token create`)")
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse}
                                           for status in (400, 401, 403, 404, 409, 413, 422, 429, 503)}


def require(scope: str) -> Callable[..., Operator]:
    """A dependency admitting operators whose token has `scope` or a higher one (read < deploy < admin)."""

    # The security parameter documents the bearer scheme in OpenAPI; the dashboard's cookie also counts.
    def dependency(request: Request, _credentials: HTTPAuthorizationCredentials | None = Security(bearer_scheme)
                   ) -> Operator:
        return operator_from_token(context_of(request).db, bearer_token(request), scope)

    return dependency
