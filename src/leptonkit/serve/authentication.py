"""Who may call which route: bearer API keys, scopes, and the few routes that stay open.

Default deny: every route needs a key except ``/health`` and ``/ready`` (and ``/metrics`` with
``--metrics-public``), so a route added later is protected without anyone remembering to. A route tagged
``"admin"`` (adapter load and unload) needs a key with the admin scope.

Every refusal is counted in ``leptonkit_auth_failures_total``; the audit log gets a bounded line for it (the path cut
to :data:`AUDIT_PATH_CHARS`) and at most :data:`AUDIT_LINES_PER_MINUTE` lines per client address, the lines left
out counted in the next one written (``suppressed``), so a flood of unauthenticated requests cannot fill the disk.
"""

from __future__ import annotations

import ipaddress
import re
import time

from fastapi import FastAPI
from starlette.routing import compile_path
from starlette.types import Scope

from leptonkit.monitor import metrics
from leptonkit.security.audit import AuditLog
from leptonkit.security.keys import ApiKey, KeyStore
from leptonkit.security.ratelimit import TokenBucket
from leptonkit.serve.refusals import AuthenticationError

OPEN_PATHS = frozenset({"/health", "/ready"})
ADMIN_TAG = "admin"
AUDIT_PATH_CHARS = 256
AUDIT_LINES_PER_MINUTE = 60
AUDIT_CLIENTS = 4096  # client addresses remembered for audit sampling; beyond it the table starts over


def auth_required(auth: str | None, host: str) -> bool:
    """``--auth on|off``; unset means on unless the server binds a loopback address only."""
    if auth is not None:
        return auth == "on"
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


class RouteTable:
    """Method and path to route template and admin flag, from the app's own OpenAPI schema.

    The middleware runs before routing, so it matches paths itself; the schema is FastAPI's public view of every
    route however routers are nested. Built at the first request, when every route exists.
    """

    CACHE_SIZE = 4096  # distinct (method, path) pairs remembered; beyond it the cache starts over

    def __init__(self) -> None:
        self._rules: list[tuple[str, re.Pattern[str], str, bool]] | None = None
        self._cache: dict[tuple[str, str], tuple[str, bool]] = {}

    def lookup(self, app: FastAPI, method: str, path: str) -> tuple[str, bool]:
        """``(path template, needs admin scope)``; ``(mount path, False)`` for a self-authenticated mount's path and
        ``("other", False)`` for any other path the schema does not list."""
        found = self._cache.get((method, path))
        if found is None:
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            mount = self_authenticated_mount({"path": path, "app": app})
            found = (mount, False) if mount is not None else self._match(app, method, path)
            self._cache[(method, path)] = found
        return found

    def _match(self, app: FastAPI, method: str, path: str) -> tuple[str, bool]:
        if self._rules is None:
            self._rules = [
                (verb.upper(), compile_path(template)[0], template, ADMIN_TAG in (operation.get("tags") or ()))
                for template, operations in app.openapi().get("paths", {}).items()
                for verb, operation in operations.items()
            ]
        for verb, pattern, template, admin in self._rules:
            if verb == method and pattern.match(path):
                return template, admin
        return "other", False


def self_authenticated_mount(scope: Scope) -> str | None:
    """The mount path of an app that authenticates its own users (``serve.operations.mount_self_authenticated``, e.g.
    the web console's session cookies) when the request is for it, else ``None``."""
    path = scope["path"]
    for prefix in getattr(scope["app"].state, "self_authenticated", ()):
        if path == prefix or path.startswith(f"{prefix}/"):
            return prefix
    return None


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class Authenticator:
    """Decide one request: the caller's key, or why it is refused (recorded in metrics and the audit log)."""

    def __init__(self, keys: KeyStore, audit: AuditLog, metrics_public: bool) -> None:
        self.keys = keys
        self.audit = audit
        self.open_paths = OPEN_PATHS | ({"/metrics"} if metrics_public else set())
        self._audit_budget: dict[str, tuple[TokenBucket, int]] = {}  # client -> (lines left, lines suppressed)

    def check(self, scope: Scope, admin_route: bool, request_id: str) -> ApiKey | None:
        """``None`` for an open route, the caller's key when allowed; raises :class:`AuthenticationError`."""
        if scope["path"] in self.open_paths or self_authenticated_mount(scope) is not None:
            return None
        token = bearer_token(scope)
        key = self.keys.authenticate(token) if token else None
        if key is None:
            reason = "missing_key" if token is None else "invalid_key"
            metrics.AUTH_FAILURES.labels(reason).inc()
            self._audit("auth_failure", scope, request_id, reason=reason)
            message = (
                "missing API key: send 'Authorization: Bearer KEY' (create one with: leptonkit keys create)"
                if token is None
                else "invalid or revoked API key (see: leptonkit keys list)"
            )
            raise AuthenticationError(message, status=401, error_type="authentication_error", code=reason)
        if admin_route and key.scope != "admin":
            metrics.AUTH_FAILURES.labels("insufficient_scope").inc()
            self._audit("permission_denied", scope, request_id, key=key.name, scope=key.scope)
            raise AuthenticationError(
                f"key {key.name!r} has scope {key.scope!r}; this route needs an admin key",
                status=403,
                error_type="permission_error",
                code="insufficient_scope",
            )
        return key

    def _audit(self, event: str, request: Scope, request_id: str, **fields: str) -> None:
        """One bounded audit line, unless this client has used its lines for the minute."""
        client = _client(request)
        now = time.monotonic()
        if client not in self._audit_budget and len(self._audit_budget) >= AUDIT_CLIENTS:
            self._audit_budget.clear()
        bucket, suppressed = self._audit_budget.get(client) or (TokenBucket(AUDIT_LINES_PER_MINUTE), 0)
        if bucket.take(1.0, now) > 0:
            self._audit_budget[client] = (bucket, suppressed + 1)
            return
        self._audit_budget[client] = (bucket, 0)
        path = request["path"]
        if len(path) > AUDIT_PATH_CHARS:
            path = f"{path[:AUDIT_PATH_CHARS]}... ({len(path)} characters)"
        extra = {"suppressed": suppressed} if suppressed else {}
        self.audit.write(
            event, request_id=request_id, method=request["method"][:16], path=path, client=client, **fields, **extra
        )


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None
