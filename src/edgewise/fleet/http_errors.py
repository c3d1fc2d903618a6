"""The one JSON error shape every response uses, and the handlers that give it to every error.

    {"error": {"code": "...", "message": "...", "fix": "..."}}
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgewise.core.errors import EdgewiseError, InternalError
from edgewise.core.wire import ErrorBody, ErrorResponse
from edgewise.fleet.errors import status_of


def error_response(status: int, code: str, message: str, fix: str = "") -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, fix=fix))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_edgewise(_request: Request, error: Exception) -> JSONResponse:
        known = error if isinstance(error, EdgewiseError) else EdgewiseError(str(error))
        status, code = status_of(known)
        if isinstance(known, InternalError):  # a bug's details stay in the log, not in the answer
            return error_response(500, code, f"unexpected server error: {known.kind}", known.fix)
        return error_response(status, code, known.message, known.fix)

    async def on_validation(_request: Request, error: Exception) -> JSONResponse:
        problems = error.errors() if isinstance(error, RequestValidationError) else []
        first = problems[0] if problems else {"loc": (), "msg": str(error)}
        where = ".".join(str(part) for part in first.get("loc", ())) or "request"
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}",
                              "send the fields the OpenAPI schema (/openapi.json) describes")

    async def on_http(_request: Request, error: Exception) -> JSONResponse:
        status = error.status_code if isinstance(error, StarletteHTTPException) else 500
        detail = error.detail if isinstance(error, StarletteHTTPException) else str(error)
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "too_large",
                422: "invalid_request", 429: "rate_limited"}.get(status, "http_error")
        return error_response(status, code, str(detail))

    async def on_unexpected(_request: Request, error: Exception) -> JSONResponse:
        kind = type(error).__name__
        return error_response(500, "internal", f"unexpected server error: {kind}", "report it with the server log")

    app.add_exception_handler(EdgewiseError, on_edgewise)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
