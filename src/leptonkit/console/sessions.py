"""Console log-in: an API key becomes a server-side session named by an HttpOnly, SameSite=Strict cookie.

The browser never holds the key: it sends it once, in the log-in form, and from then on only the session cookie (a
random 256-bit id, never in ``localStorage``). The session keeps the key in this process's memory so that the
console can call the server's API (playground, ``/metrics``) as that key. Every request checks the key again, so a
revoked key ends its sessions at once. Sessions end after ``idle`` seconds without a request and ``max_age`` seconds
after log-in, and when the process exits.

CSRF: every state-changing request is a POST carrying the session's token (a form field, or the
``X-CSRF-Token`` header from JavaScript), compared in constant time; the Strict cookie is a second defence.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from leptonkit.security.keys import KeyStore

COOKIE = "leptonkit_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_SESSIONS = 10_000  # beyond it the oldest sessions are dropped


@dataclass
class Session:
    id: str
    key: str  # the plain API key, in memory only, to call the server as its owner
    name: str
    scope: str
    csrf: str
    created: float
    seen: float
    flash: list[str] = field(default_factory=list)  # messages shown once, on the next page

    @property
    def admin(self) -> bool:
        return self.scope == "admin"

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


REASONS = {
    "login": "log in with an API key",
    "ended": "your session has ended (logged out, or the console restarted): log in again",
    "expired": "your session expired: log in again",
    "revoked": "the API key of your session was revoked: log in with another key",
}


class SessionError(Exception):
    """Why a request has no session: a key of :data:`REASONS`, whose text the log-in page shows."""

    def __init__(self, reason: str) -> None:
        super().__init__(REASONS[reason])
        self.reason = reason


class SessionStore:
    def __init__(self, keys: KeyStore, *, idle: float = 1800.0, max_age: float = 8 * 3600.0) -> None:
        self.keys = keys
        self.idle, self.max_age = idle, max_age
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def login(self, key: str) -> Session | None:
        """A new session for ``key``; ``None`` for a wrong, malformed or revoked key."""
        found = self.keys.authenticate(key.strip())
        if found is None:
            return None
        now = time.monotonic()
        session = Session(
            secrets.token_urlsafe(32), key.strip(), found.name, found.scope, secrets.token_urlsafe(32), now, now
        )
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions.values(), key=lambda s: s.seen)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session:
        """The live session ``session_id`` names; :class:`SessionError` saying why there is none."""
        if not session_id:
            raise SessionError("login")
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise SessionError("ended")
            now = time.monotonic()
            if now - session.seen > self.idle or now - session.created > self.max_age:
                del self._sessions[session_id]
                raise SessionError("expired")
            session.seen = now
        if self.keys.authenticate(session.key) is None:
            self.logout(session_id)
            raise SessionError("revoked")
        return session

    def logout(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)
