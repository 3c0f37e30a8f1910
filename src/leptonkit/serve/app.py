"""The FastAPI application factory: models load in the lifespan, errors answer in OpenAI's shape.

``create_app(config)`` builds the routes, then ``serve/operations.py`` adds what an operator needs around them:
``GET /metrics``, the safety policy, the middlewares (``serve/middleware.py``: request ids, auth, limits, logs) and
the auth and error answers in ``/openapi.json`` (``serve/openapi.py``). Custom services (``--service``,
``serve/services/``) are checked here, before the server starts, and set up in the lifespan after the models.

Every :class:`LeptonkitError` becomes its HTTP status with ``{"error": {"message", "type", "param", "code"}}``;
request validation failures (bad JSON, invalid UTF-8, a field of the wrong type) are 400s naming the field. Only a
bug is a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from leptonkit.config import home as default_home
from leptonkit.errors import LeptonkitError
from leptonkit.monitor import metrics
from leptonkit.security.ratelimit import RateLimiter
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.models import ModelSet
from leptonkit.serve.operations import install_operations
from leptonkit.serve.protocol import best_error, error_body, field_path
from leptonkit.serve.refusals import answer
from leptonkit.serve.routes import admin, openai, responses, tasks, tokenizer
from leptonkit.serve.services import ServiceSet, install_services, service_spec


def create_app(config: ServeConfig, limiter: RateLimiter | None = None) -> FastAPI:
    """The server's app; ``limiter`` replaces the per-process rate limiter built from ``config`` (Ray Serve
    replicas pass one whose buckets live in a shared actor: ``deploy/ray_state.py``)."""
    services = [service_spec(source) for source in config.services]  # checked before the server starts

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.models = await ModelSet.load(config)
        try:
            if services:
                registry = app.state.models.registry
                app.state.services = await ServiceSet.start(services, registry, app.state.models.engine_threads)
            try:
                yield
            finally:
                if services:
                    await app.state.services.close()
        finally:
            await app.state.models.close()

    app = FastAPI(title="leptonkit", version="1", lifespan=lifespan)
    app.state.config = config
    app.state.models = None
    app.add_exception_handler(LeptonkitError, _leptonkit_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for module in (admin, openai, responses, tasks, tokenizer):
        app.include_router(module.router)
    install_operations(app, config, limiter)
    if services:
        install_services(app, services)
    return app


def _error(status: int, message: str, error_type: str, param: str | None = None) -> JSONResponse:
    metrics.ERRORS.labels(type=error_type).inc()
    return JSONResponse(error_body(message, error_type, param, status), status_code=status)


async def _leptonkit_error(request: Request, err: LeptonkitError) -> JSONResponse:
    status, body, headers = answer(err)
    # the registry's errors name its folder for the CLI's user; an HTTP caller is told "the registry"
    home = Path(request.app.state.config.home or default_home())
    for folder in {str(home), str(home.expanduser().resolve())}:
        body["error"]["message"] = body["error"]["message"].replace(folder, "the registry")
    metrics.ERRORS.labels(type=err.error_type).inc()
    return JSONResponse(body, status_code=status, headers=headers or None)


async def _validation_error(request: Request, err: Any) -> JSONResponse:
    first = best_error(err.errors())
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error") or first.get("msg")
        return _error(400, f"the request body is not valid JSON: {reason}", "invalid_request_error")
    where = field_path(first.get("loc", ())) or "body"
    if first.get("type") == "extra_forbidden":
        message = f"{where} is not supported by this server: leave it out (README: the OpenAI API)"
        return _error(400, message, "invalid_request_error", where)
    message = f"{where}: {first.get('msg', '').removeprefix('Value error, ')}"
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
