"""The FastAPI application factory: models load in the lifespan, errors answer in OpenAI's shape.

``create_app(config)`` builds the routes, then hands the app to ``leptonkit.serve.operations.install`` (metrics,
auth, limits, logs) once. Every :class:`LeptonkitError` becomes its HTTP status with
``{"error": {"message", "type", "param", "code"}}``; request validation failures (bad JSON, invalid UTF-8, a field
of the wrong type) are 400s naming the field. Only a bug is a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from leptonkit.errors import LeptonkitError
from leptonkit.monitor import metrics
from leptonkit.serve import operations
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.models import ModelSet
from leptonkit.serve.protocol import error_body
from leptonkit.serve.routes import admin, openai, tasks

RETRY_AFTER_SECONDS = "1"


def create_app(config: ServeConfig) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.models = await ModelSet.load(config)
        try:
            yield
        finally:
            await app.state.models.close()

    app = FastAPI(title="leptonkit", version="1", lifespan=lifespan)
    app.state.config = config
    app.state.models = None
    app.add_exception_handler(LeptonkitError, _leptonkit_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for module in (admin, openai, tasks):
        app.include_router(module.router)
    operations.install(app, config)
    return app


def _error(status: int, message: str, error_type: str, param: str | None = None, **headers: str) -> JSONResponse:
    metrics.ERRORS.labels(type=error_type).inc()
    return JSONResponse(error_body(message, error_type, param, status), status_code=status, headers=headers or None)


async def _leptonkit_error(request: Request, err: Any) -> JSONResponse:
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if err.http_status == 429 else {}
    return _error(err.http_status, str(err), err.error_type, err.param, **headers)


async def _validation_error(request: Request, err: Any) -> JSONResponse:
    first = err.errors()[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return _error(400, f"the request body is not valid JSON: {first.get('msg')}", "invalid_request_error")
    where = ".".join(location) or "body"
    message = f"{where}: {first.get('msg')}"
    if "input" in first and first.get("type") not in ("missing",):
        message += f" (got {str(first['input'])[:80]!r})"
    return _error(400, message, "invalid_request_error", where)


async def _http_error(request: Request, err: Any) -> JSONResponse:
    error_type = "not_found_error" if err.status_code == 404 else "invalid_request_error"
    if err.status_code == 400:
        message = "the request body could not be read: it must be UTF-8 JSON"
    else:
        message = f"{request.method} {request.url.path}: {err.detail}"
    return _error(err.status_code, message, error_type)
