"""The HTTP side of services: ``GET /v1/services``, a ``POST`` route per endpoint, and its answers (admission, the
safety policy on strings, server-sent events, a logged 500 for a failing handler)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from leptonkit.errors import InvalidInputError, LeptonkitError
from leptonkit.monitor.logging import access_logger
from leptonkit.serve.admission import admit_input, open_stream
from leptonkit.serve.engine.base import Delta
from leptonkit.serve.middleware import annotate, record_of
from leptonkit.serve.parsing import JsonRoute
from leptonkit.serve.protocol import error_body
from leptonkit.serve.safety import CONTENT_FILTER, ContentFilterError
from leptonkit.serve.services.declare import PREFIX, EndpointSpec, ServiceSpec
from leptonkit.serve.services.runtime import HandlerError, ServiceSet
from leptonkit.serve.sse import DONE, sse_data

TAG = "services"


def install_services(app: FastAPI, specs: list[ServiceSpec]) -> None:
    """Add ``GET /v1/services`` and each endpoint's route to ``app``; a route that another route (built in or of
    another service) already has is a one-line error, raised before the server starts."""
    # the app's own view of its routes, however routers are nested (as the auth route table reads it), not cached
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    taken = {
        *schema.get("paths", {}),
        *(route.path for route in app.routes if isinstance(getattr(route, "path", None), str)),
    }
    for spec in specs:
        for ep in spec.endpoints:
            if ep.path in taken:
                raise InvalidInputError(
                    f"service {spec.cls.__name__}: endpoint {ep.method}'s route {ep.path} collides with an "
                    "existing route",
                    hint="rename the method or the service (name = '...'), or give endpoint(route=...) another path",
                    param="service",
                )
            taken.add(ep.path)
            _add_route(app, ep)
    app.add_api_route(PREFIX, _list_services, methods=["GET"], tags=[TAG], summary="List custom-service endpoints")


async def _list_services(request: Request) -> dict[str, Any]:
    services: ServiceSet = request.app.state.services
    return {"object": "list", "data": [ep.listing() for ep in services.endpoints]}


def _add_route(app: FastAPI, ep: EndpointSpec) -> None:
    async def route(request: Request, body: Any) -> Any:
        return await _answer(request, ep, body)

    route.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
            inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=ep.request_model),
        ]
    )
    app.router.add_api_route(
        ep.path,
        route,
        methods=["POST"],
        tags=[TAG],
        name=f"{ep.service}.{ep.method}",
        summary=f"{ep.service}.{ep.method}" + (" (batched)" if ep.options.batch else ""),
        response_model=None if ep.options.stream else ep.response_type,
        response_class=StreamingResponse if ep.options.stream else JSONResponse,
        route_class_override=JsonRoute,
    )


async def _answer(request: Request, ep: EndpointSpec, body: BaseModel) -> Any:
    """Answer one request to ``ep``: admission, the handler (batched, streamed or plain), output checks."""
    arguments = {name: getattr(body, name) for name in ep.parameters}
    await admit_input(request, ep.service, _strings(arguments.values()))
    annotate(request, endpoint_method=ep.method)
    replica = request.app.state.services.replicas[ep.service]
    if ep.options.stream:
        open_stream(request)
        return StreamingResponse(_events(request, ep, replica.stream(ep, arguments)), media_type="text/event-stream")
    try:
        if ep.options.batch:
            (result,) = await replica.batchers[ep.method].submit([arguments])
        else:
            result = await replica.call(ep, arguments)
        result = TypeAdapter(ep.response_type).validate_python(result)
    except HandlerError as err:
        return _failure(request, ep, str(err))
    except ValidationError as err:
        return _failure(
            request,
            ep,
            f"{ep.service}.{ep.method} returned a value that is not its return type: {err.errors()[0]['msg']}",
        )
    if isinstance(result, str):
        result = await _checked_output(request, result)
    return JSONResponse(TypeAdapter(ep.response_type).dump_python(result, mode="json"))


async def _events(request: Request, ep: EndpointSpec, items: AsyncIterator[Any]) -> AsyncIterator[str]:
    safety = request.app.state.safety
    item_type = TypeAdapter(ep.response_type)
    try:
        if safety.active and ep.response_type is str:
            async for delta in safety.wrap(_as_deltas(items)):
                if delta.finish_reason == CONTENT_FILTER:
                    yield sse_data(
                        error_body(
                            "the output was stopped by this server's safety policy",
                            "invalid_request_error",
                            None,
                            CONTENT_FILTER,
                        )
                    )
                    break
                if delta.text:
                    yield sse_data(delta.text)
        else:
            async for item in items:
                yield sse_data(item_type.dump_python(item_type.validate_python(item), mode="json"))
    except LeptonkitError as err:
        yield sse_data(error_body(str(err), err.error_type, err.param, err.http_status))
    except (HandlerError, ValidationError) as err:
        message = _log_failure(request, ep, str(err))
        yield sse_data(error_body(message, "server_error", None, 500))
    yield DONE


def _strings(values: Any) -> list[str]:
    """Every string among the request's arguments (and in lists of them), for the safety policy and the log line."""
    found: list[str] = []
    for value in values:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list | tuple):
            found += [v for v in value if isinstance(v, str)]
    return found


async def _as_deltas(items: AsyncIterator[Any]) -> AsyncIterator[Delta]:
    async for item in items:
        yield Delta(text=str(item))
    yield Delta(text="", finish_reason="stop")


async def _checked_output(request: Request, text: str) -> str:
    """A string result through the safety policy, as generated text is: redacted, or refused (400)."""
    safety = request.app.state.safety
    if not safety.active:
        return text
    released = [delta async for delta in safety.wrap(_as_deltas(_one(text)))]
    if released and released[-1].finish_reason == CONTENT_FILTER:
        raise ContentFilterError("the service's output was refused by this server's safety policy", param=None)
    return "".join(delta.text for delta in released)


async def _one(item: Any) -> AsyncIterator[Any]:
    yield item


def _log_failure(request: Request, ep: EndpointSpec, detail: str) -> str:
    """Log a handler failure with its traceback as an ERROR access line; the message the caller gets."""
    record = record_of(request)
    request_id = record.request_id if record is not None else None
    if record is not None:
        record.error = "service_error"
    access_logger().error(
        {
            "event": "service_error",
            "request_id": request_id,
            "service": ep.service,
            "endpoint": ep.method,
            "traceback": detail,
        }
    )
    return f"{ep.service}.{ep.method} failed (request id {request_id}); the server log has the traceback"


def _failure(request: Request, ep: EndpointSpec, detail: str) -> JSONResponse:
    message = _log_failure(request, ep, detail)
    return JSONResponse(error_body(message, "server_error", None, 500), status_code=500)
