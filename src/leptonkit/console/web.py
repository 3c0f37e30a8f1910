"""What every console page shares: the console's state, who is asking (session, admin), CSRF-checked forms, the
server it talks to, and rendering a template."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

from leptonkit.console.operations import Rule, Watcher, load_rules
from leptonkit.console.sessions import COOKIE, CSRF_FIELD, CSRF_HEADER, Session, SessionError, SessionStore
from leptonkit.registry import Registry
from leptonkit.security.audit import AuditLog
from leptonkit.security.keys import KeyStore

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "console"
UPSTREAM_TIMEOUT = httpx.Timeout(30.0, read=600.0)  # a streamed reply may take long between tokens on a busy CPU


@dataclass
class ConsoleSettings:
    home: Path
    server_url: str | None = None  # the leptonkit server the playground and operations call
    same_server: bool = False  # mounted by ``serve --console``: the server is the one that received the request
    audit_log: Path | None = None
    alerts: Path | None = None
    data_dirs: list[Path] = field(default_factory=list)  # prepared datasets to list beside those lineage names
    session_idle: float = 1800.0
    session_max_age: float = 8 * 3600.0
    secure_cookie: bool = False  # served over HTTPS: the cookie gets ``Secure``


class Console:
    """The state one console app keeps: registry, keys, sessions, audit log, templates, the server's last scrape."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.registry = Registry(settings.home)
        self.keys = KeyStore(settings.home)
        self.sessions = SessionStore(self.keys, idle=settings.session_idle, max_age=settings.session_max_age)
        self.audit = AuditLog(settings.audit_log or settings.home / "audit.log")
        self.rules: list[Rule]
        self.rules, self.rules_problem = load_rules(settings.alerts)
        self.watcher = Watcher()
        self.templates = Environment(
            loader=FileSystemLoader(RESOURCES / "templates"), autoescape=select_autoescape(default=True)
        )
        self.templates.filters["json"] = lambda value: json.dumps(value, indent=2, default=str, ensure_ascii=False)
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """One HTTP client to the server, made on first use (inside the server's event loop)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT)  # trusts SSL_CERT_FILE for a private CA
        return self._client

    def server_url(self, request: Request) -> str | None:
        """The server's base URL: the configured one, this very server under ``serve --console``, else ``None``."""
        if self.settings.server_url:
            return self.settings.server_url.rstrip("/")
        if not self.settings.same_server:
            return None
        server = request.scope.get("server")
        if request.url.scheme == "http" and server:  # the socket itself, not a name a proxy in front may own
            host, port = server
            return f"http://{f'[{host}]' if ':' in host else host}:{port}"
        return f"{request.url.scheme}://{request.url.netloc}"  # HTTPS: the name its certificate carries


class LoginRequired(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class Refused(Exception):
    """A request the console answers with a page (or JSON) saying why: 403 admin only, 403 CSRF, 400 bad form."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def console_of(request: Request) -> Console:
    return request.app.state.console


def base(request: Request) -> str:
    """The console's URL prefix (``/console``)."""
    return request.scope.get("root_path", "").rstrip("/")


def session_of(request: Request) -> Session:
    try:
        return console_of(request).sessions.get(request.cookies.get(COOKIE))
    except SessionError as err:
        raise LoginRequired(err.reason) from None


def admin_of(request: Request) -> Session:
    session = session_of(request)
    if not session.admin:
        raise Refused(403, f"this needs an admin key; you are logged in as {session.name!r} ({session.scope})")
    return session


def check_origin(request: Request) -> None:
    """Refuse a POST whose ``Origin`` (sent by browsers) is another site: a second CSRF defence."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise Refused(403, "this request came from another site (Origin header); it was refused")


async def form_of(request: Request, session: Session | None) -> dict[str, str]:
    """The POSTed form's fields (first value each), its CSRF token checked against ``session``'s."""
    check_origin(request)
    fields = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    if session is not None and not session.csrf_ok(fields.get(CSRF_FIELD)):
        raise Refused(403, "the form's CSRF token is missing or stale: reload the page and try again")
    return fields


def check_csrf_header(request: Request, session: Session) -> None:
    """JavaScript calls send the session's token in ``X-CSRF-Token``."""
    check_origin(request)
    if not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise Refused(403, "missing or stale CSRF token: reload the page")


def render(request: Request, template: str, *, status: int = 200, session: Session | None = None, **context: Any):
    flash: list[str] = []
    if session is not None:
        flash, session.flash = session.flash, []
    page = (
        console_of(request)
        .templates.get_template(template)
        .render(base=base(request), session=session, flash=flash, page=template.removesuffix(".html"), **context)
    )
    return HTMLResponse(page, status_code=status)
