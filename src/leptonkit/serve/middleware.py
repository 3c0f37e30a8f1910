"""The serving middlewares: one pure-ASGI class per concern, installed by ``serve.app.install_operations``.

- :class:`AccountingMiddleware` (outermost) gives every HTTP request an id (accepts and returns ``X-Request-ID``)
  and a :class:`RequestRecord`, and when the request ends writes one JSON log line and the request metrics.
- :class:`AccessMiddleware` authenticates the API key (``serve/authentication.py``), applies the per-key request
  limit and the body size limit, refuses input flagged by the safety policy, and audits admin actions.

Routes add what only they know (model, adapter, token counts, output text) with :func:`annotate` and
:func:`metered`. Pure ASGI rather than ``BaseHTTPMiddleware``: streamed responses pass through chunk by chunk, a
client that disconnects mid-stream still reaches the ``finally`` that records it and frees its stream slot, and the
cost per request stays in the tens of microseconds (``benchmarks/ops_overhead.py``).
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

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leptonkit.config import home as default_home
from leptonkit.monitor import metrics
from leptonkit.monitor.logging import log_request
from leptonkit.security.audit import AuditLog
from leptonkit.security.keys import ApiKey, KeyStore
from leptonkit.security.ratelimit import RateLimiter
from leptonkit.serve.authentication import Authenticator, Denial, RouteTable, auth_required
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.engine.base import Delta
from leptonkit.serve.protocol import error_body
from leptonkit.serve.safety import CONTENT_FILTER, ContentFilterError, SafetyPolicy

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STATE_KEY = "leptonkit_ops"


@dataclass
class RequestRecord:
    """What one request did, filled in by the middlewares and by routes through :func:`annotate`."""

    request_id: str
    method: str
    path: str
    started: float
    endpoint: str = "other"
    admin_route: bool = False
    model: str | None = None
    adapter: str | None = None
    status: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt: str | None = None
    output: str | None = None
    error: str | None = None
    identity: str | None = None  # whom the rate limits charge: the key's name, or the client address
    stream_slot: bool = False  # holds one of the identity's concurrent stream slots
    extra: dict[str, Any] = field(default_factory=dict)


def annotate(request: Request, **values: Any) -> None:
    """Attach model, adapter, token counts or content to the current request's log line and metrics.

    Known keys: ``model``, ``adapter``, ``prompt_tokens``, ``completion_tokens``, ``prompt``, ``output``; anything
    else lands in the log line as is. A request that did not pass through the middlewares is ignored.
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


def redact_content(text: str) -> str:
    """Mask personal data (e-mails, card numbers, names, ...) with the data stage's PII detector: the one gate
    every logged prompt and output passes through (``--log-content``)."""
    from leptonkit.registry.pii import redact  # loads the detector's model: only servers that log content pay

    return redact(text)


class AccountingMiddleware:
    """Request id, the request's record, and at its end one JSON log line and the request metrics."""

    def __init__(self, app: ASGIApp, settings: ServeConfig) -> None:
        self.app = app
        self.log_content = settings.log_content
        self.routes = RouteTable()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = self._open(scope)
        try:
            await self.app(scope, receive, _stamping(send, record))
        except BaseException as exc:
            if record.status == 0:
                record.status = 500
            record.error = type(exc).__name__
            raise
        finally:
            self._close(record)

    def _open(self, scope: Scope) -> RequestRecord:
        record = RequestRecord(
            request_id=_request_id(scope), method=scope["method"], path=scope["path"], started=time.perf_counter()
        )
        record.endpoint, record.admin_route = self.routes.lookup(scope["app"], record.method, record.path)
        scope[_STATE_KEY] = record
        return record

    def _close(self, record: RequestRecord) -> None:
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
        if self.log_content:
            line["prompt"] = redact_content(record.prompt) if record.prompt else None
            line["output"] = redact_content(record.output) if record.output else None
        log_request(line)


class Refusal(Exception):
    """A request the access layer answers itself, with an error in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str,
        code: str,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type, self.code = status, message, error_type, code
        self.headers = headers or []
        self.param = param


class AccessMiddleware:
    """Who may send this request, and may they send it now: key, request rate, body size, flagged input."""

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
        limits = (settings.rate_limit_rpm, settings.rate_limit_tpm, settings.max_streams_per_key)
        self.limiter = RateLimiter(*limits) if any(v is not None for v in limits) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record: RequestRecord = scope[_STATE_KEY]
        key: ApiKey | None = None
        try:
            try:
                key = self._authenticate(scope, record)
                self._admit(scope, record, key)
                body = await self._read_body(receive)
                payload = _json_object(body)
                _note_request(record, payload)
                await self._check_body(record, payload)
            except Refusal as refusal:
                record.error = refusal.code
                await _send_error(send, refusal)
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self._settle(record, key)

    def _authenticate(self, scope: Scope, record: RequestRecord) -> ApiKey | None:
        """The caller's key (``None`` with auth off or on an open route); a :class:`Refusal` when refused."""
        if self.auth is None:
            return None
        decision = self.auth.check(scope, record.admin_route, record.request_id)
        if isinstance(decision, Denial):
            headers = [(b"www-authenticate", b"Bearer")]
            raise Refusal(decision.status, decision.message, decision.error_type, decision.code, headers=headers)
        record.extra["key"] = decision.name if decision else None
        return decision

    def _admit(self, scope: Scope, record: RequestRecord, key: ApiKey | None) -> None:
        """Charge the request to its key (or client address) and refuse it over ``--rate-limit-rpm/-tpm``."""
        if self.limiter is None:
            return
        record.identity = key.name if key else f"client:{(scope.get('client') or ('-',))[0]}"
        refused = self.limiter.admit(record.identity)
        if refused is not None:
            raise self._rate_limited(*refused)

    async def _read_body(self, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        body = await _read_body(receive, limit)
        if body is None:
            raise Refusal(413, f"request body larger than {limit} bytes", "invalid_request_error", "body_too_large")
        return body

    async def _check_body(self, record: RequestRecord, payload: dict[str, Any]) -> None:
        """Flagged input, ``max_tokens`` over the cap, and a stream over the key's concurrent streams."""
        if self.safety.active and record.prompt:
            try:
                await self.safety.check_input(record.prompt)
            except ContentFilterError as err:
                raise Refusal(400, str(err), err.error_type, CONTENT_FILTER, param=err.param) from None
        problem = self._limit_problem(payload)
        if problem is not None:
            raise Refusal(400, problem, "invalid_request_error", "max_tokens_too_large", param="max_tokens")
        if payload.get("stream") is True:
            limiter, identity = self.limiter, record.identity
            if limiter is not None and identity is not None and not limiter.open_stream(identity):
                raise self._rate_limited("concurrent_streams", 1)
            record.stream_slot = True
            metrics.STREAMS_ACTIVE.inc()

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

    def _rate_limited(self, limit: str, retry_after: int) -> Refusal:
        metrics.RATE_LIMITED.labels(limit).inc()
        message = (
            f"too many concurrent streams for this key (limit {self.settings.max_streams_per_key}); retry when one ends"
            if limit == "concurrent_streams"
            else f"rate limit exceeded ({limit}); retry in {retry_after} s"
        )
        headers = [(b"retry-after", str(retry_after).encode())]
        return Refusal(429, message, "rate_limit_error", limit, headers=headers)

    def _settle(self, record: RequestRecord, key: ApiKey | None) -> None:
        """Free the stream slot, charge the tokens the request used, and audit an admin action."""
        if record.stream_slot:
            metrics.STREAMS_ACTIVE.dec()
            if self.limiter is not None and record.identity is not None:
                self.limiter.close_stream(record.identity)
        if self.limiter is not None and record.identity is not None:
            self.limiter.charge_tokens(record.identity, (record.prompt_tokens or 0) + (record.completion_tokens or 0))
        if record.admin_route and key is not None:
            self.audit.write(
                "admin_action",
                key=key.name,
                method=record.method,
                path=record.path,
                status=record.status,
                request_id=record.request_id,
            )


def _stamping(send: Send, record: RequestRecord) -> Send:
    """A ``send`` that records the response status and returns the request id header."""
    header = (REQUEST_ID_HEADER, record.request_id.encode())

    async def stamped(message: Message) -> None:
        if message["type"] == "http.response.start":
            record.status = message["status"]
            message["headers"] = [*message.get("headers", []), header]
        await send(message)

    return stamped


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


async def _send_error(send: Send, refusal: Refusal) -> None:
    body = json.dumps(error_body(refusal.message, refusal.error_type, refusal.param, refusal.code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers + refusal.headers})
    await send({"type": "http.response.body", "body": body})
