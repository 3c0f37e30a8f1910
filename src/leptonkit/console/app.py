"""The console application: log-in and log-out, security headers on every response, error pages, and the routers
of ``pages.py`` (HTML) and ``api.py`` (the playground's and operations' JSON and streams).

``create_console(settings)`` is an ASGI app meant to be mounted at ``/console``: by ``leptonkit console`` on a
server of its own, or by ``leptonkit serve --console`` beside the API (:func:`mount_console`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leptonkit.console import api, pages
from leptonkit.console.sessions import COOKIE, REASONS
from leptonkit.console.web import (
    RESOURCES,
    Console,
    ConsoleSettings,
    LoginRequired,
    Refused,
    base,
    console_of,
    form_of,
    render,
    session_of,
)
from leptonkit.errors import LeptonkitError

MOUNT = "/console"
# No inline script or style anywhere: scripts and styles are files the console serves; charts are SVG attributes.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the CSP and its companions to every console response; pages are never cached (they hold CSRF tokens
    and, once, a new API key)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].removeprefix(scope.get("root_path", "")).startswith("/static/")
        cache = b"public, max-age=600" if static else b"no-store"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message["headers"] = [*kept, *HEADERS, (b"cache-control", cache)]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_console(settings: ConsoleSettings) -> FastAPI:
    app = FastAPI(title="leptonkit console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = Console(settings)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=RESOURCES / "static"), name="static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(LeptonkitError, _leptonkit_error)
    app.add_api_route("/login", _login_page, methods=["GET"])
    app.add_api_route("/login", _login, methods=["POST"])
    app.add_api_route("/logout", _logout, methods=["POST"])
    app.include_router(pages.router)
    app.include_router(api.router)
    return app


def mount_console(app: FastAPI, settings: ConsoleSettings) -> None:
    """``serve --console``: the console at ``/console`` of the serving ``app``, calling that server's API."""
    from leptonkit.serve.operations import mount_self_authenticated

    mount_self_authenticated(app, MOUNT, create_console(settings))


def standalone(settings: ConsoleSettings) -> FastAPI:
    """``leptonkit console``: an app with the console at ``/console`` and ``/`` sending there."""
    root = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    root.add_api_route("/", lambda: RedirectResponse(f"{MOUNT}/", status_code=307), methods=["GET"])
    root.mount(MOUNT, create_console(settings))
    return root


def _is_api(request: Request) -> bool:
    return request.url.path.removeprefix(base(request)).startswith("/api/")


async def _login_required(request: Request, err: LoginRequired) -> JSONResponse | RedirectResponse:
    if _is_api(request):
        return JSONResponse({"error": {"message": REASONS[err.reason], "type": "authentication_error"}}, 401)
    return RedirectResponse(f"{base(request)}/login?reason={err.reason}", status_code=303)


async def _refused(request: Request, err: Refused):
    if _is_api(request):
        return JSONResponse({"error": {"message": err.message, "type": "invalid_request_error"}}, err.status)
    return render(request, "error.html", status=err.status, session=_optional_session(request), message=err.message)


async def _leptonkit_error(request: Request, err: LeptonkitError):
    if _is_api(request):
        return JSONResponse({"error": {"message": str(err), "type": err.error_type}}, err.http_status)
    return render(request, "error.html", status=err.http_status, session=_optional_session(request), message=str(err))


def _optional_session(request: Request):
    try:
        return session_of(request)
    except LoginRequired:
        return None


def _login_page(request: Request, reason: str | None = None):
    message = REASONS.get(reason or "")
    return render(request, "login.html", message=message if reason != "login" else None)


async def _login(request: Request):
    console = console_of(request)
    fields = await form_of(request, None)
    session = console.sessions.login(fields.get("key", ""))
    if session is None:
        client = request.client.host if request.client else None
        console.audit.write("auth_failure", source="console", reason="invalid_key", client=client)
        error = "that API key is not valid (wrong, revoked or mistyped): see leptonkit keys list"
        return render(request, "login.html", status=401, error=error)
    console.audit.write("console_login", key=session.name, scope=session.scope)
    response = RedirectResponse(f"{base(request)}/", status_code=303)
    response.set_cookie(
        COOKIE,
        session.id,
        path=f"{base(request)}/",
        httponly=True,
        samesite="strict",
        secure=console.settings.secure_cookie or request.url.scheme == "https",
    )
    return response


async def _logout(request: Request):
    session = session_of(request)
    await form_of(request, session)
    console_of(request).sessions.logout(session.id)
    response = RedirectResponse(f"{base(request)}/login", status_code=303)
    response.delete_cookie(COOKIE, path=f"{base(request)}/", httponly=True, samesite="strict")
    return response
