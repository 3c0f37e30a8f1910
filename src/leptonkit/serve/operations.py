"""Everything an operator needs around the serving routes, installed by ``create_app`` with one call.

:func:`install` adds ``GET /metrics`` (Prometheus text format), documents auth and error answers in
``/openapi.json``, builds the server's safety policy, and adds one pure-ASGI middleware that, for every HTTP request:
assigns a request id (accepts and returns ``X-Request-ID``), authenticates the API key (``serve/security.py``),
applies rate, size, ``max_tokens`` and stream limits, refuses input flagged by the safety policy, records request
counters and latency histograms, writes one structured JSON log line, and audits admin actions. Routes add what
only they know (adapter, token counts, output text) with :func:`annotate` and :func:`metered`.

Pure ASGI rather than ``BaseHTTPMiddleware``: streamed responses pass through chunk by chunk, a client that
disconnects mid-stream still reaches the ``finally`` that records it and frees its stream slot, and the cost per
request stays in the tens of microseconds (``benchmarks/ops_overhead.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leptonkit.config import home as default_home
from leptonkit.errors import InvalidInputError
from leptonkit.monitor import metrics
from leptonkit.monitor.logging import access_logger, log_request, redact_content
from leptonkit.security.audit import AuditLog
from leptonkit.security.keys import ApiKey, KeyStore
from leptonkit.security.ratelimit import RateLimiter
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.engine.base import Delta
from leptonkit.serve.protocol import error_body
from leptonkit.serve.safety import CONTENT_FILTER, ContentFilterError, SafetyPolicy
from leptonkit.serve.security import OPEN_PATHS, Authenticator, Denial, RouteTable, auth_required

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STATE_KEY = "leptonkit_ops"


@dataclass
class RequestRecord:
    """What one request did, filled in by the middleware and by routes through :func:`annotate`."""

    request_id: str
    method: str
    path: str
    started: float
    endpoint: str = "other"
    model: str | None = None
    adapter: str | None = None
    status: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt: str | None = None
    output: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def annotate(request: Request, **values: Any) -> None:
    """Attach model, adapter, token counts or content to the current request's log line and metrics.

    Known keys: ``model``, ``adapter``, ``prompt_tokens``, ``completion_tokens``, ``prompt``, ``output``; anything
    else lands in the log line as is. A request that did not pass through :func:`install`'s middleware is ignored.
    """
    record: RequestRecord | None = request.scope.get(_STATE_KEY)
    if record is None:
        return
    for key, value in values.items():
        if hasattr(record, key) and key != "extra":
            setattr(record, key, value)
        else:
            record.extra[key] = value


async def metered(request: Request, stream: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    """Pass one choice's deltas through, adding its generated tokens (and text, for ``--log-content``) to the
    request's record when it ends, streamed or not, so token limits and log lines see every completion."""
    record: RequestRecord | None = request.scope.get(_STATE_KEY)
    texts: list[str] = []
    async with contextlib.aclosing(stream):
        async for delta in stream:
            if record is not None:
                texts.append(delta.text)
                if delta.finish_reason is not None:
                    record.completion_tokens = (record.completion_tokens or 0) + delta.completion_tokens
                    record.output = "".join(texts) if record.output is None else f"{record.output}\n{''.join(texts)}"
            yield delta


def check_prompt_tokens(config: ServeConfig, prompts: list[list[int]]) -> None:
    """Refuse a prompt longer than ``--max-prompt-tokens`` (the model's context is checked by the route)."""
    limit = config.max_prompt_tokens
    longest = max((len(p) for p in prompts), default=0)
    if limit is not None and longest > limit:
        raise InvalidInputError(
            f"the prompt is {longest} tokens; this server accepts at most {limit}",
            hint="shorten the prompt",
            param="prompt",
        )


def install(app: FastAPI, config: ServeConfig) -> None:
    """Add ``/metrics`` and the operations middleware to ``app`` (call once, from ``create_app``)."""
    app.add_api_route(
        "/metrics", _metrics_endpoint, methods=["GET"], tags=["operations"], response_class=PlainTextResponse
    )
    _document_operations(app)
    app.state.safety = SafetyPolicy.from_config(config)
    app.add_middleware(OperationsMiddleware, settings=config, safety=app.state.safety)
    if config.log_content:
        from leptonkit.privacy.pii import NO_MODEL_WARNING, default_detector

        if not default_detector().names_detected:
            access_logger().warning({"event": "log_content", "message": f"names are not redacted: {NO_MODEL_WARNING}"})


ERROR_STATUSES = {
    "400": "Invalid request, or input refused by the safety policy (code content_filter).",
    "401": "Missing, invalid or revoked API key.",
    "403": "The key's scope does not allow this route.",
    "404": "Unknown model, adapter or route.",
    "409": "Conflicts with the server's state.",
    "413": "Request body too large.",
    "429": "Rate limit, stream limit or full queue; see Retry-After.",
    "503": "Not ready.",
    "504": "Timed out.",
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "integer", "null"]},
            },
        }
    },
}


def _document_operations(app: FastAPI) -> None:
    """Describe what this layer adds to every route in ``/openapi.json``: bearer auth, error answers in OpenAI's
    shape, and server-sent events where a request can ask for ``stream``."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["ErrorResponse"] = ERROR_SCHEMA
        components.setdefault("securitySchemes", {})["apiKey"] = {"type": "http", "scheme": "bearer"}
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in ERROR_STATUSES.items():
                    responses.setdefault(status, {"description": description, "content": error})
                if path not in OPEN_PATHS:
                    operation["security"] = [{"apiKey": []}]
                if _can_stream(schema, operation):
                    ok = next(iter(r for code, r in responses.items() if code.startswith("2")), None)
                    if ok is not None:
                        ok.setdefault("content", {})["text/event-stream"] = {"schema": {"type": "string"}}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _can_stream(schema: dict[str, Any], operation: dict[str, Any]) -> bool:
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    name = body.get("$ref", "").rsplit("/", 1)[-1]
    return "stream" in schema.get("components", {}).get("schemas", {}).get(name, {}).get("properties", {})


def _metrics_endpoint() -> Response:
    """Prometheus text exposition of every ``leptonkit_*`` metric plus process CPU and memory."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class OperationsMiddleware:
    """Request id, authentication, rate and size limits, metrics and one JSON log line for every HTTP request."""

    def __init__(self, app: ASGIApp, settings: ServeConfig, safety: SafetyPolicy) -> None:
        self.app = app
        self.settings = settings
        self.safety = safety
        home = Path(settings.home) if settings.home else default_home()
        self.audit = AuditLog(settings.audit_log or home / "audit.log")
        self.auth = (
            Authenticator(KeyStore(home), self.audit, settings.metrics_public)
            if auth_required(settings.auth, settings.host)
            else None
        )
        self.routes = RouteTable()
        limits = (settings.rate_limit_rpm, settings.rate_limit_tpm, settings.max_streams_per_key)
        self.limiter = RateLimiter(*limits) if any(v is not None for v in limits) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord(
            request_id=_request_id(scope), method=scope["method"], path=scope["path"], started=time.perf_counter()
        )
        record.endpoint, admin_route = self.routes.lookup(scope["app"], record.method, record.path)
        scope[_STATE_KEY] = record
        request_id_header = (REQUEST_ID_HEADER, record.request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message["headers"] = [*message.get("headers", []), request_id_header]
            await send(message)

        key: ApiKey | None = None
        identity: str | None = None
        stream_open = False
        try:
            if self.auth is not None:
                decision = self.auth.check(scope, admin_route, record.request_id)
                if isinstance(decision, Denial):
                    record.error = decision.code
                    await _send_error(
                        send_with_id,
                        decision.status,
                        decision.message,
                        decision.error_type,
                        decision.code,
                        [(b"www-authenticate", b"Bearer")],
                    )
                    return
                key = decision
            record.extra["key"] = key.name if key else None
            if self.limiter is not None:
                identity = key.name if key else f"client:{(scope.get('client') or ('-',))[0]}"
                refused = self.limiter.admit(identity)
                if refused is not None:
                    await self._rate_limited(send_with_id, record, *refused)
                    return
            body = await _read_body(receive, self.settings.max_body_bytes)
            if body is None:
                record.error = "body_too_large"
                await _send_error(
                    send_with_id,
                    413,
                    f"request body larger than {self.settings.max_body_bytes} bytes",
                    "invalid_request_error",
                    "body_too_large",
                )
                return
            payload = _json_object(body)
            _note_request(record, payload)
            if self.safety.active and record.prompt:
                try:
                    await self.safety.check_input(record.prompt)
                except ContentFilterError as err:
                    record.error = CONTENT_FILTER
                    await _send_error(send_with_id, 400, str(err), err.error_type, CONTENT_FILTER, param=err.param)
                    return
            problem = self._limit_problem(payload)
            if problem is not None:
                record.error = "max_tokens_too_large"
                await _send_error(
                    send_with_id, 400, problem, "invalid_request_error", "max_tokens_too_large", param="max_tokens"
                )
                return
            if payload.get("stream") is True and self.limiter is not None and identity is not None:
                if not self.limiter.open_stream(identity):
                    await self._rate_limited(send_with_id, record, "concurrent_streams", 1)
                    return
                stream_open = True
            if payload.get("stream") is True:
                metrics.STREAMS_ACTIVE.inc()
            try:
                await self.app(scope, _replay(body, receive), send_with_id)
            finally:
                if payload.get("stream") is True:
                    metrics.STREAMS_ACTIVE.dec()
        except BaseException as exc:
            if record.status == 0:
                record.status = 500
            record.error = type(exc).__name__
            raise
        finally:
            if stream_open:
                self.limiter.close_stream(identity)
            if self.limiter is not None and identity is not None:
                self.limiter.charge_tokens(identity, (record.prompt_tokens or 0) + (record.completion_tokens or 0))
            if admin_route and key is not None:
                self.audit.write(
                    "admin_action",
                    key=key.name,
                    method=record.method,
                    path=record.path,
                    status=record.status,
                    request_id=record.request_id,
                )
            self._finish(record)

    def _limit_problem(self, payload: dict[str, Any]) -> str | None:
        """Why the body breaks a configured limit (``max_tokens`` cap), else ``None``."""
        cap = self.settings.max_tokens_cap
        if cap is None:
            return None
        for name in ("max_tokens", "max_completion_tokens"):
            value = payload.get(name)
            if isinstance(value, int) and value > cap:
                return f"{name}={value} exceeds this server's cap of {cap} (send {name} <= {cap})"
        return None

    async def _rate_limited(self, send: Send, record: RequestRecord, limit: str, retry_after: int) -> None:
        metrics.RATE_LIMITED.labels(limit).inc()
        record.error = limit
        message = (
            f"too many concurrent streams for this key (limit {self.settings.max_streams_per_key}); retry when one ends"
            if limit == "concurrent_streams"
            else f"rate limit exceeded ({limit}); retry in {retry_after} s"
        )
        await _send_error(send, 429, message, "rate_limit_error", limit, [(b"retry-after", str(retry_after).encode())])

    def _finish(self, record: RequestRecord) -> None:
        latency = time.perf_counter() - record.started
        # A refused request's model name is whatever the caller typed: keep it out of the labels (bounded series).
        model = (record.model or "") if record.status < 400 else ""
        metrics.REQUESTS.labels(record.endpoint, model, record.adapter or "", str(record.status)).inc()
        metrics.E2E_LATENCY.labels(record.endpoint, model).observe(latency)
        if record.error is not None:  # refusals made here and exceptions; the app's error handlers count their own
            metrics.ERRORS.labels(record.error).inc()
        line: dict[str, Any] = {
            "request_id": record.request_id,
            "method": record.method,
            "route": record.endpoint,
            "model": model or None,  # a refused request's model field is caller text: not logged
            "adapter": record.adapter,
            "status": record.status,
            "latency_ms": round(latency * 1000, 2),
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "error": record.error,
            **record.extra,
        }
        if self.settings.log_content:
            line["prompt"] = redact_content(record.prompt) if record.prompt else None
            line["output"] = redact_content(record.output) if record.output else None
        log_request(line)


def _request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token, else a fresh one (never echo arbitrary bytes)."""
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(text):
                return text
    return os.urandom(16).hex()


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` when it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then defers to the server (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``{}`` for anything else (the route reports its own validation errors)."""
    if not body.lstrip().startswith(b"{"):
        return {}
    try:
        payload = json.loads(body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _note_request(record: RequestRecord, payload: dict[str, Any]) -> None:
    """Take the model name and the prompt text from a JSON request body."""
    if isinstance(payload.get("model"), str):
        record.model = payload["model"][:200]
    record.prompt = _prompt_text(payload)


def _prompt_text(payload: dict[str, Any]) -> str | None:
    """The user-supplied text of an OpenAI-style or task request (messages, prompt or input)."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    for key in ("prompt", "input", "text", "texts"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
    return None


async def _send_error(
    send: Send,
    status: int,
    message: str,
    error_type: str,
    code: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    param: str | None = None,
) -> None:
    body = json.dumps(error_body(message, error_type, param, code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
