"""How a request body becomes JSON, decided in one place for every route: the routes' pydantic models then validate
it once, and every limit, filter and counter reads that validated object (``serve/admission.py``).

- A UTF-8 byte order mark before the body is accepted and dropped (RFC 8259 §8.1 lets a parser ignore it): the
  text after it is what every check sees.
- JSON nested deeper than the decoder can follow (Python's recursion limit: about a thousand arrays or objects;
  no request model nests deeper than five) is a 400, not a ``RecursionError``.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

TOO_DEEP = "arrays or objects nested too deeply"


class JsonRequest(Request):
    """A request whose ``json()`` is :func:`parse_json` (FastAPI calls it for ``application/json`` bodies)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """The route class of every router: its endpoint's body is parsed by :func:`parse_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parsed(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return parsed


def parse_json(body: bytes) -> Any:
    """``body`` as JSON; a ``json.JSONDecodeError`` (FastAPI's 400 ``json_invalid``) when it is not, or when it
    nests deeper than the decoder's recursion limit allows."""
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8) :]
    try:
        return json.loads(body)
    except RecursionError:
        raise json.JSONDecodeError(TOO_DEEP, body.decode("utf-8", "replace")[:100], 0) from None
