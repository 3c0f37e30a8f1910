"""What a service declares: the :class:`Service` base class, the :func:`endpoint` decorator, and :func:`describe`,
which checks a class and turns its endpoints' type hints into request models (the package docstring has the contract).
"""

from __future__ import annotations

import collections.abc
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, create_model

from leptonkit.errors import InvalidInputError
from leptonkit.registry.store import Registry

PREFIX = "/v1/services"
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
