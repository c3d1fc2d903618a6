"""Every JSON body the API accepts is parsed by `edgewise.core.strict_json`, once, at the edge.

FastAPI parses bodies with `json.loads`, which keeps the last of duplicate keys, accepts NaN and
1e999, any integer length and lone surrogates, and recurses until the stack runs out. Routers use
`StrictJSONRoute`, whose requests parse with the strict loader: each of those is a 422 naming the
problem, before validation and long before the database.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from edgewise.core.strict_json import StrictJSONError, loads


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads(await self.body())
            except StrictJSONError as error:
                raise HTTPException(422, f"body: {error.message}") from None
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
