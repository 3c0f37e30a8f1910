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

The package's modules: ``declare`` (:class:`Service`, :func:`endpoint`, :func:`describe`: what a class declares),
``loading`` (``FILE.py:CLASS`` to a checked class), ``runtime`` (a replica per service, its thread and batchers) and
``routes`` (the HTTP routes and their answers).
"""

from leptonkit.serve.services.declare import Service, describe, endpoint
from leptonkit.serve.services.loading import service_source, service_spec
from leptonkit.serve.services.routes import install_services
from leptonkit.serve.services.runtime import ServiceSet

__all__ = [
    "Service",
    "ServiceSet",
    "describe",
    "endpoint",
    "install_services",
    "service_source",
    "service_spec",
]
