"""The serving middlewares: one pure-ASGI class per concern, installed by ``serve.operations.install_operations``.

- :class:`AccountingMiddleware` (outermost) gives every HTTP request an id (accepts and returns ``X-Request-ID``)
  and a :class:`RequestRecord`, and when the request ends writes one JSON log line and the request metrics.
- :class:`AccessMiddleware` authenticates the API key (``serve/authentication.py``), applies the per-key request
  limit (never to ``/health`` and ``/ready``) and the body size limit, and when the request ends frees its stream
  slot, charges the tokens it used and audits admin actions.

Neither reads the body's JSON: the routes' protocol models validate it once, and the limits that depend on what a
request asks for (``max_tokens`` cap, sequences and tokens, streams, flagged input) read that validated object
(``serve/admission.py``). Routes add what only they know (model, adapter, token counts, output text) with
:func:`annotate` and :func:`metered`. A response that fails after its first byte is logged and counted with the
error's status, not the 200 it started with.

Pure ASGI rather than ``BaseHTTPMiddleware``: streamed responses pass through chunk by chunk, a client that
disconnects mid-stream still reaches the ``finally`` that records it and frees its stream slot, and the cost per
request stays in the tens of microseconds (``benchmarks/ops_overhead.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leptonkit.config import home as default_home
from leptonkit.errors import LeptonkitError
from leptonkit.monitor import metrics
from leptonkit.monitor.logging import log_request
from leptonkit.security.audit import AuditLog
from leptonkit.security.keys import ApiKey, KeyStore
from leptonkit.security.ratelimit import RateLimiter
from leptonkit.serve.authentication import OPEN_PATHS, Authenticator, RouteTable, auth_required
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.engine.base import Delta
from leptonkit.serve.refusals import BodyTooLargeError, answer, rate_limited

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STATE_KEY = "leptonkit_ops"
CLIENT_CLOSED = 499  # nginx's status for a client that closed the connection before the answer


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
    reserved_tokens: int = 0  # charged to the identity up front (serve/admission.py), settled at the end
    streaming: bool = False  # counted in leptonkit_streams_active
    stream_slot: bool = False  # holds one of the identity's concurrent stream slots
    extra: dict[str, Any] = field(default_factory=dict)


def record_of(request: Request) -> RequestRecord | None:
    """The current request's record (``None`` for an app without these middlewares)."""
    return request.scope.get(_STATE_KEY)


def annotate(request: Request, **values: Any) -> None:
    """Attach model, adapter, token counts or content to the current request's log line and metrics.

    Known keys: ``model``, ``adapter``, ``prompt_tokens``, ``completion_tokens``, ``prompt``, ``output``; anything
    else lands in the log line as is. A request that did not pass through the middlewares is ignored.
    """
    record = record_of(request)
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
    record = record_of(request)
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
            record.status = _failure_status(exc, record.status)
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


class AccessMiddleware:
    """Who may send this request, and may they send it now: key, request rate, body size; settled at the end."""

    def __init__(self, app: ASGIApp, settings: ServeConfig, limiter: RateLimiter | None) -> None:
        self.app = app
        self.max_body_bytes = settings.max_body_bytes
        self.limiter = limiter
        home = Path(settings.home) if settings.home else default_home()
        self.audit = AuditLog(settings.audit_log or home / "audit.log")
        self.auth = (
            Authenticator(KeyStore(home), self.audit, settings.metrics_public)
            if auth_required(settings.auth, settings.host)
            else None
        )

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
            except LeptonkitError as refusal:
                record.error = getattr(refusal, "code", None) or type(refusal).__name__
                await _send_error(send, refusal)
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self._settle(record, key)

    def _authenticate(self, scope: Scope, record: RequestRecord) -> ApiKey | None:
        """The caller's key (``None`` with auth off or on an open route); raises when refused."""
        if self.auth is None:
            return None
        key = self.auth.check(scope, record.admin_route, record.request_id)
        record.extra["key"] = key.name if key else None
        return key

    def _admit(self, scope: Scope, record: RequestRecord, key: ApiKey | None) -> None:
        """Charge the request to its key (or client address) and refuse it over ``--rate-limit-rpm/-tpm``; probes
        of ``/health`` and ``/ready`` are never charged."""
        if self.limiter is None or record.path in OPEN_PATHS:
            return
        record.identity = key.name if key else f"client:{(scope.get('client') or ('-',))[0]}"
        refused = self.limiter.admit(record.identity)
        if refused is not None:
            raise rate_limited(*refused)

    async def _read_body(self, receive: Receive) -> bytes:
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            raise BodyTooLargeError(f"request body larger than {self.max_body_bytes} bytes", code="body_too_large")
        return body

    def _settle(self, record: RequestRecord, key: ApiKey | None) -> None:
        """Free the stream slot, charge the tokens used (refunding the reservation) and audit an admin action."""
        if record.streaming:
            metrics.STREAMS_ACTIVE.dec()
        if self.limiter is not None and record.identity is not None:
            if record.stream_slot:
                self.limiter.close_stream(record.identity)
            used = (record.prompt_tokens or 0) + (record.completion_tokens or 0)
            self.limiter.charge_tokens(record.identity, used - record.reserved_tokens)
        if record.admin_route and key is not None:
            self.audit.write(
                "admin_action",
                key=key.name,
                method=record.method,
                path=record.path,
                status=record.status,
                request_id=record.request_id,
            )


def _failure_status(exc: BaseException, status: int) -> int:
    """The status a request that raised ``exc`` is logged and counted with, before its first byte or after it (a
    stream that broke): the error's, except that a client who left keeps what it was sent (499 if nothing)."""
    if isinstance(exc, ClientDisconnect | asyncio.CancelledError):
        return status or CLIENT_CLOSED
    return exc.http_status if isinstance(exc, LeptonkitError) else 500


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


async def _send_error(send: Send, err: LeptonkitError) -> None:
    status, body, headers = answer(err)
    content = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})
