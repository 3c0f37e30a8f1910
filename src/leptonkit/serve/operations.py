"""The operations layer of a leptonkit app: ``GET /metrics``, the safety policy, the middlewares
(``serve/middleware.py``: request ids, auth, limits, logs, metrics) and the auth and error answers in
``/openapi.json`` (``serve/openapi.py``).

Apart from ``serve/app.py`` (routes and engines) so that an app without models, such as a test app of the operations
layer alone, installs it without importing torch and transformers: a process serving one starts in under a second
rather than about nine here.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp

from leptonkit.monitor.logging import access_logger
from leptonkit.security.ratelimit import RateLimiter
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.middleware import AccessMiddleware, AccountingMiddleware
from leptonkit.serve.openapi import document_errors
from leptonkit.serve.safety import SafetyPolicy


def install_operations(app: FastAPI, config: ServeConfig, limiter: RateLimiter | None = None) -> None:
    """Add ``/metrics``, the safety policy, the middlewares and the OpenAPI additions to ``app`` (once); the rate
    limits are ``limiter``'s when given, else a :class:`RateLimiter` of ``config``'s limits (if any)."""
    app.add_api_route(
        "/metrics", _metrics_endpoint, methods=["GET"], tags=["operations"], response_class=PlainTextResponse
    )
    document_errors(app)
    app.state.safety = SafetyPolicy.from_config(config)
    limits = (config.rate_limit_rpm, config.rate_limit_tpm, config.max_streams_per_key)
    if limiter is None and any(v is not None for v in limits):
        limiter = RateLimiter(*limits)
    app.state.limiter = limiter
    app.add_middleware(AccessMiddleware, settings=config, limiter=app.state.limiter)
    app.add_middleware(AccountingMiddleware, settings=config)  # added last: outermost, sees every refusal
    if config.log_content:
        from leptonkit.privacy.pii import NO_MODEL_WARNING
        from leptonkit.registry.pii import default_detector

        if default_detector().model_ref is None:  # names come from word lists and cues alone (privacy/names.py)
            access_logger().warning({"event": "log_content", "message": NO_MODEL_WARNING})


def mount_self_authenticated(app: FastAPI, path: str, sub_app: ASGIApp) -> None:
    """Mount ``sub_app`` at ``path`` as an app that authenticates its own users (the web console: API key log-in,
    session cookies): API-key checks skip its paths; request ids, logs, metrics, rate and body limits still apply."""
    app.mount(path, sub_app)
    app.state.self_authenticated = (*getattr(app.state, "self_authenticated", ()), path)


def _metrics_endpoint() -> Response:
    """Prometheus text exposition of every ``leptonkit_*`` metric plus process CPU and memory."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
