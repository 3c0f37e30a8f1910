"""Custom Python services: a user's class served beside registry models, with the server's batching, auth, limits,
request ids, logs, metrics and safety filters.

A service is a :class:`Service` subclass whose endpoints are methods decorated with :func:`endpoint`::

    import leptonkit as lk

    class Reranker(lk.Service):
        def setup(self):                          # once per replica, before the server answers
            self.model = self.load("minilm")      # a registry model (leptonkit.registry.loading.LoadedModel)

        @lk.endpoint(batch=32, max_wait_ms=5)     # each argument arrives as a list; return one result per item
        def score(self, query: list[str], passage: list[str]) -> list[float]: ...

        @lk.endpoint(stream=True)                 # the response is server-sent events, one per item yielded
        def tokens(self, text: str) -> Iterator[str]: ...

Served with ``leptonkit serve --service path/to/file.py:Reranker [REF ...]``.

Routes: each endpoint is ``POST /v1/services/{service}/{method}``, where ``service`` is the class attribute ``name``
(default: the class name in lower case) and ``method`` the method's name: ``/v1/services/reranker/score``. ``route=``
on :func:`endpoint` gives another path. ``GET /v1/services`` lists every endpoint, which is how
``leptonkit.Client.call`` finds one by name.

Requests and responses: the body is a JSON object with one field per parameter, typed by the method's hints (a
pydantic model, in ``/openapi.json``); unknown and mistyped fields are a 400 naming the field. A batched endpoint takes
and returns one item per request (``{"query": "...", "passage": "..."}`` -> a float); concurrent requests are gathered
into the lists (``engine.microbatch``, the encoder engine's batcher) up to ``batch`` items or ``max_wait_ms``. A
streaming endpoint answers ``data: <JSON item>`` events and ``data: [DONE]``; a failure mid-stream is a last
``data: {"error": ...}`` event.

What applies as to built-in routes: the API key (default deny: these routes are in the route table), per-key request
rates and stream slots, the request id and access log line (``model`` is the service name), metrics under the route
as ``endpoint``, the safety policy on string arguments (input refused with 400 ``content_filter``) and on string
results and streamed strings (redacted, or refused with 400 / ended with a ``content_filter`` error event). A handler
that raises a :class:`~leptonkit.errors.LeptonkitError` answers its status; any other exception is a 500 naming the
request id, with the traceback in an ERROR access-log line, and the server goes on serving.

Handlers that are plain functions run on the service's own thread (one per replica, with the engines' torch thread
setting), one call at a time; ``async def`` handlers run on the event loop.
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import importlib
import importlib.util
import inspect
import json
import re
import sys
import traceback
import typing
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from leptonkit.errors import InvalidInputError, LeptonkitError
from leptonkit.monitor import metrics
from leptonkit.monitor.logging import access_logger
from leptonkit.registry.store import Registry
from leptonkit.serve.admission import admit_input, open_stream
from leptonkit.serve.engine.base import Delta
from leptonkit.serve.engine.microbatch import MicroBatcher
from leptonkit.serve.middleware import annotate, record_of
from leptonkit.serve.parsing import JsonRoute
from leptonkit.serve.protocol import error_body
from leptonkit.serve.safety import CONTENT_FILTER, ContentFilterError

PREFIX = "/v1/services"
TAG = "services"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_STREAM_TYPES = (
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


class Service:
    """Base class of a custom service: subclass it, decorate methods with :func:`endpoint`, serve it with
    ``leptonkit serve --service FILE.py:CLASS``. ``name`` (default: the class name in lower case) is the route
    segment. A service may be called directly too, which is how to unit-test it:

    >>> import leptonkit as lk
    >>> class Greeter(lk.Service):
    ...     def setup(self):
    ...         self.greeting = "hello"
    ...     @lk.endpoint()
    ...     def greet(self, who: str) -> str:
    ...         return f"{self.greeting} {who}"
    >>> greeter = Greeter()
    >>> greeter.setup()
    >>> greeter.greet("world")
    'hello world'
    >>> [e.path for e in describe(Greeter).endpoints]
    ['/v1/services/greeter/greet']
    """

    name: ClassVar[str | None] = None
    _registry: Registry | None = None

    def setup(self) -> None:
        """Runs once per replica before the server answers (load models here); the default does nothing."""

    def load(self, ref: str, *, task: str | None = None) -> Any:
        """A registry model (``NAME``, ``NAME:VERSION``, ``NAME@ALIAS``, a folder or ``builtin:...``) loaded for
        inference from the server's registry: a :class:`~leptonkit.registry.loading.LoadedModel` for the functions of
        :mod:`leptonkit.inference` (``classify(model, texts)``, ``embed``, ``extract_entities``). Encoders get the
        encoder engine's unpadded batches, as built-in routes do."""
        from leptonkit.registry.loading import load_model
        from leptonkit.serve.engine.encoder import prepare_encoder

        loaded = load_model(ref, task=task, registry=self._registry or Registry())
        if loaded.task != "generation":
            prepare_encoder(loaded.model)
        return loaded


@dataclass(frozen=True)
class EndpointOptions:
    batch: int | None
    max_wait_ms: float
    stream: bool
    route: str | None


def endpoint(
    batch: int | None = None, max_wait_ms: float = 5.0, stream: bool = False, route: str | None = None
) -> Callable[[Callable], Callable]:
    """Mark a :class:`Service` method as an HTTP endpoint (``POST /v1/services/{service}/{method}``, or ``route``).

    ``batch=N``: every parameter is a ``list[...]`` and the method returns a list of the same length; concurrent
    requests, one item each, are gathered into lists of up to ``N`` items, waiting at most ``max_wait_ms`` for a
    batch to fill. ``stream=True``: the method yields items (``-> Iterator[str]``), sent as server-sent events. The
    method itself is returned unchanged, so it can still be called directly:

    >>> class Tagger(Service):
    ...     @endpoint(batch=8)
    ...     def shout(self, text: list[str]) -> list[str]:
    ...         return [t.upper() for t in text]
    >>> Tagger().shout(["a", "b"])
    ['A', 'B']
    """
    if batch is not None and batch < 1:
        raise InvalidInputError(f"endpoint(batch={batch}): batch must be at least 1", param="batch")
    if max_wait_ms < 0:
        raise InvalidInputError(f"endpoint(max_wait_ms={max_wait_ms}): must be 0 or more", param="max_wait_ms")
    if batch is not None and stream:
        raise InvalidInputError("an endpoint is batched or streaming, not both", hint="drop batch= or stream=True")

    def mark(function: Callable) -> Callable:
        function.__leptonkit_endpoint__ = EndpointOptions(batch, max_wait_ms, stream, route)  # type: ignore[attr-defined]
        return function

    return mark


@dataclass
class EndpointSpec:
    """One endpoint as served: its route, the request model built from its parameters, the response type."""

    service: str
    method: str
    options: EndpointOptions
    parameters: list[str]
    request_model: type[BaseModel]
    response_type: Any  # one response (batched: one item; streaming: one event)
    is_async: bool

    @property
    def path(self) -> str:
        return self.options.route or f"{PREFIX}/{self.service}/{self.method}"

    def listing(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "endpoint": self.method,
            "path": self.path,
            "batch": self.options.batch,
            "stream": self.options.stream,
        }


@dataclass
class ServiceSpec:
    name: str
    cls: type[Service]
    endpoints: list[EndpointSpec] = field(default_factory=list)


def describe(cls: Any) -> ServiceSpec:
    """Check a service class and describe its endpoints; raises :class:`InvalidInputError` (one line) when the class
    has no endpoints, an endpoint lacks type hints, or a batched or streaming endpoint's hints do not fit."""
    if not (isinstance(cls, type) and issubclass(cls, Service)):
        raise InvalidInputError(f"{cls!r} is not a leptonkit.Service subclass", hint="class X(leptonkit.Service): ...")
    name = cls.name or cls.__name__.lower()
    if not _NAME.match(name):
        raise InvalidInputError(
            f"service name {name!r} of {cls.__name__} is not a route segment",
            hint="set name = '...' on the class: lower-case letters, digits, '-' and '_'",
        )
    spec = ServiceSpec(name, cls)
    for method, function in inspect.getmembers(cls, callable):
        options = getattr(function, "__leptonkit_endpoint__", None)
        if options is not None:
            spec.endpoints.append(_endpoint_spec(cls, name, method, function, options))
    if not spec.endpoints:
        raise InvalidInputError(
            f"service {cls.__name__} has no endpoints", hint="decorate a method with @leptonkit.endpoint()"
        )
    return spec


def _endpoint_spec(cls: type, service: str, method: str, function: Callable, options: EndpointOptions) -> EndpointSpec:
    where = f"{cls.__name__}.{method}"
    if method in vars(Service):
        raise InvalidInputError(f"{where}: {method} is Service's own method", hint="give the endpoint another name")
    if not _NAME.match(method):
        raise InvalidInputError(f"{where}: the method name is not a route segment", hint="rename it in lower case")
    try:
        hints = typing.get_type_hints(function)
    except Exception as err:
        raise InvalidInputError(f"{where}: its type hints do not resolve ({err})") from None
    signature = inspect.signature(function)
    fields: dict[str, Any] = {}
    for parameter in list(signature.parameters.values())[1:]:  # after self
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise InvalidInputError(f"{where}: *args and **kwargs cannot be request fields", hint="name each one")
        if parameter.name not in hints:
            raise InvalidInputError(
                f"{where}: parameter {parameter.name!r} has no type hint",
                hint=f"annotate it, e.g. {parameter.name}: {'list[str]' if options.batch else 'str'}",
            )
        annotation = hints[parameter.name]
        if options.batch:
            annotation = _list_item(annotation, f"{where} is batched: parameter {parameter.name!r}")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    if "return" not in hints:
        raise InvalidInputError(f"{where}: no return type hint", hint="annotate it, e.g. -> str")
    response = hints["return"]
    if options.batch:
        response = _list_item(response, f"{where} is batched: its return type")
    elif options.stream:
        response = _stream_item(response, where)
    model_name = f"{cls.__name__}{method.title().replace('_', '')}Request"
    request_model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
    is_async = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
    return EndpointSpec(service, method, options, list(fields), request_model, response, is_async)


def _list_item(annotation: Any, what: str) -> Any:
    if typing.get_origin(annotation) is not list or len(typing.get_args(annotation)) != 1:
        raise InvalidInputError(
            f"{what} must be a list (list[str], say): each request sends one item, the method gets them all"
        )
    return typing.get_args(annotation)[0]


def _stream_item(annotation: Any, where: str) -> Any:
    if typing.get_origin(annotation) not in _STREAM_TYPES:
        raise InvalidInputError(f"{where} streams: its return type must be Iterator[...]", hint="-> Iterator[str]")
    args = typing.get_args(annotation)
    return args[0] if args else Any


def load_service(spec: str) -> type[Service]:
    """The class ``FILE.py:CLASS`` (or ``package.module:CLASS``) names; one-line errors for a bad spec, a file that
    does not import, or a missing class."""
    source, sep, class_name = spec.rpartition(":")
    if not sep or not source or not class_name:
        raise InvalidInputError(f"--service {spec!r}: expected FILE.py:CLASS", param="service")
    path = Path(source).expanduser()
    try:
        if source.endswith(".py") or path.exists():
            if not path.is_file():
                raise InvalidInputError(f"--service {spec}: no file {source}", param="service")
            module = _import_file(path)
        else:
            module = importlib.import_module(source)
    except LeptonkitError:
        raise
    except BaseException as err:  # the user's module: a SyntaxError or a SystemExit is theirs to fix, not ours
        raise InvalidInputError(
            f"--service {spec}: {source} does not import ({type(err).__name__}: {err})",
            hint="run it with python to see the traceback",
            param="service",
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(
            n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Service) and v is not Service
        )
        raise InvalidInputError(
            f"--service {spec}: {source} has no class {class_name}",
            hint=f"services there: {', '.join(found) or 'none'}",
            param="service",
        )
    return cls


def _import_file(path: Path) -> Any:
    resolved = path.resolve()
    module_name = f"leptonkit_service_{resolved.stem}_{abs(hash(str(resolved))):x}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, resolved)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pydantic look their module up while it executes
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def service_spec(service: str | type[Service]) -> ServiceSpec:
    """A ``FILE.py:CLASS`` string or a class, checked (:func:`describe`)."""
    return describe(load_service(service) if isinstance(service, str) else service)


def service_source(cls: type[Service]) -> str:
    """``FILE.py:CLASS`` for a class defined at the top level of a file (how a new process finds it again)."""
    file = inspect.getsourcefile(cls)
    if file is None or "." in cls.__qualname__:
        raise InvalidInputError(
            f"service {cls.__qualname__} must be defined at the top level of a .py file to be served in another "
            "process",
            hint="move the class into a module file",
        )
    return f"{file}:{cls.__name__}"


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
        return await request.app.state.services.handle(request, ep, body)

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


class HandlerError(Exception):
    """A service handler failed with an exception that is not a LeptonkitError (a bug in the service)."""


class _Replica:
    """One instance of a service class, its thread, and a batcher per batched endpoint."""

    def __init__(self, spec: ServiceSpec, registry: Registry, threads: int | None) -> None:
        self.spec = spec
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"service-{spec.name}", initializer=_use_threads, initargs=(threads,)
        )
        self.registry = registry
        self.instance: Service | None = None
        self.batchers: dict[str, MicroBatcher] = {}

    async def start(self) -> None:
        self.instance = await self.in_thread(self._create)
        for ep in self.spec.endpoints:
            if ep.options.batch:
                batcher = MicroBatcher(
                    functools.partial(self._run_batch, ep),
                    max_batch=ep.options.batch,
                    max_wait_ms=ep.options.max_wait_ms,
                    on_batch=metrics.BATCH_SIZE.labels(model=f"{ep.service}.{ep.method}").observe,
                )
                await batcher.start()
                self.batchers[ep.method] = batcher

    def _create(self) -> Service:
        instance = self.spec.cls()
        instance._registry = self.registry
        instance.setup()
        return instance

    async def stop(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()
        self.executor.shutdown(wait=True)

    async def in_thread(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, functools.partial(_packed, function, *args, **kwargs)
        )

    async def call(self, ep: EndpointSpec, arguments: dict[str, Any]) -> Any:
        function = getattr(self.instance, ep.method)
        try:
            if ep.is_async:
                return await function(**arguments)
            return await self.in_thread(function, **arguments)
        except LeptonkitError:
            raise
        except Exception as err:
            raise HandlerError(traceback.format_exc()) from err

    async def _run_batch(self, ep: EndpointSpec, items: list[dict[str, Any]]) -> list[Any]:
        columns = {name: [item[name] for item in items] for name in ep.parameters}
        results = await self.call(ep, columns)
        if not isinstance(results, list | tuple) or len(results) != len(items):
            got = f"{len(results)} results" if isinstance(results, list | tuple) else type(results).__name__
            raise HandlerError(
                f"{ep.service}.{ep.method} got {len(items)} items and returned {got}, not a list of {len(items)}"
            )
        return list(results)

    async def stream(self, ep: EndpointSpec, arguments: dict[str, Any]) -> AsyncIterator[Any]:
        function = getattr(self.instance, ep.method)
        try:
            if ep.is_async:
                async for item in function(**arguments):
                    yield item
                return
            iterator = iter(await self.in_thread(function, **arguments))
            done = object()
            while (item := await self.in_thread(next, iterator, done)) is not done:
                yield item
        except LeptonkitError:
            raise
        except Exception as err:
            raise HandlerError(traceback.format_exc()) from err


def _use_threads(threads: int | None) -> None:
    from leptonkit.serve.engine import torch_threads  # torch: imported by the server, not by a service's module

    torch_threads.use(threads)


def _packed(function: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run on the service thread with the encoder engine's unpadded batches on (models :meth:`Service.load` gave)."""
    from leptonkit.serve.engine import packed_encoder

    with packed_encoder.packing():
        return function(*args, **kwargs)


class ServiceSet:
    """The services one server process runs (one replica of each), created in the app's lifespan."""

    def __init__(self, specs: list[ServiceSpec], replicas: list[_Replica]) -> None:
        self.specs = specs
        self.replicas = {replica.spec.name: replica for replica in replicas}
        self.endpoints = [ep for spec in specs for ep in spec.endpoints]

    @classmethod
    async def start(cls, specs: list[ServiceSpec], registry: Registry, threads: int | None) -> ServiceSet:
        replicas: list[_Replica] = []
        try:
            for spec in specs:
                replica = _Replica(spec, registry, threads)
                replicas.append(replica)
                await replica.start()
        except BaseException:
            for replica in replicas:
                await replica.stop()
            raise
        return cls(specs, replicas)

    async def close(self) -> None:
        for replica in self.replicas.values():
            await replica.stop()

    async def handle(self, request: Request, ep: EndpointSpec, body: BaseModel) -> Any:
        """Answer one request to ``ep``: admission, the handler (batched, streamed or plain), output checks."""
        arguments = {name: getattr(body, name) for name in ep.parameters}
        await admit_input(request, ep.service, _strings(arguments.values()))
        annotate(request, endpoint_method=ep.method)
        replica = self.replicas[ep.service]
        if ep.options.stream:
            open_stream(request)
            return StreamingResponse(self._events(request, ep, replica, arguments), media_type="text/event-stream")
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

    async def _events(
        self, request: Request, ep: EndpointSpec, replica: _Replica, arguments: dict[str, Any]
    ) -> AsyncIterator[str]:
        items = replica.stream(ep, arguments)
        safety = request.app.state.safety
        item_type = TypeAdapter(ep.response_type)
        try:
            if safety.active and ep.response_type is str:
                async for delta in safety.wrap(_as_deltas(items)):
                    if delta.finish_reason == CONTENT_FILTER:
                        yield _event(
                            error_body(
                                "the output was stopped by this server's safety policy",
                                "invalid_request_error",
                                None,
                                CONTENT_FILTER,
                            )
                        )
                        break
                    if delta.text:
                        yield _event(delta.text)
            else:
                async for item in items:
                    yield _event(item_type.dump_python(item_type.validate_python(item), mode="json"))
        except LeptonkitError as err:
            yield _event(error_body(str(err), err.error_type, err.param, err.http_status))
        except (HandlerError, ValidationError) as err:
            message = _log_failure(request, ep, str(err))
            yield _event(error_body(message, "server_error", None, 500))
        yield "data: [DONE]\n\n"


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


def _event(payload: Any) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


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
