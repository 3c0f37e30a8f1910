"""API keys stored as salted hashes in the registry's SQLite file (table ``api_keys``, owned by this module).

A key reads ``lk-<id>-<secret>``: the id finds its row, the secret is checked against
``sha256(salt || secret)`` with :func:`hmac.compare_digest` (constant time). The secret is 256 random bits, so one
salted SHA-256 is enough (no slow KDF needed) and a lookup costs one indexed query. The plain key is shown once,
at creation, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from leptonkit import database
from leptonkit.config import home as default_home
from leptonkit.errors import ConflictError, InvalidInputError, NotFoundError

SCOPES = ("inference", "admin")
_KEY_FORMAT = re.compile(r"^lk-([0-9a-f]{16})-([A-Za-z0-9_-]{43})$")
_NAME_FORMAT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys(name) WHERE revoked_at IS NULL;
"""


@dataclass(frozen=True)
class ApiKey:
    """A stored key's public facts (never the key itself)."""

    name: str
    scope: str
    created_at: str
    revoked_at: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "scope": self.scope, "created_at": self.created_at, "revoked_at": self.revoked_at}


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


class KeyStore:
    """Create, list, revoke and check API keys in ``LEPTONKIT_HOME/registry.db``."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home) if home is not None else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.db_path = self.home / "registry.db"
        self._local = threading.local()
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return database.connect(self.db_path, check_same_thread=False)

    def _reader(self) -> sqlite3.Connection:
        """A connection kept per thread for the per-request lookup; each query sees the latest commit (revocations)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = database.connect(self.db_path)
        return conn

    def create(self, name: str, scope: str) -> tuple[ApiKey, str]:
        """A new key: its record and the plain key (shown once)."""
        if not _NAME_FORMAT.match(name):
            raise InvalidInputError(
                f"invalid key name {name!r}", hint="use 1-64 letters, digits, '.', '_' or '-'", param="name"
            )
        if scope not in SCOPES:
            raise InvalidInputError(f"invalid scope {scope!r}", hint=f"use one of {', '.join(SCOPES)}", param="scope")
        key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_bytes(16)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        conn = self._connect()
        try:
            conn.execute(
                "INSERT INTO api_keys (key_id, name, scope, salt, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, name, scope, salt, _digest(salt, secret), created),
            )
        except sqlite3.IntegrityError as err:
            raise ConflictError(
                f"an active key named {name!r} already exists", hint=f"revoke it first: leptonkit keys revoke {name}"
            ) from err
        finally:
            conn.close()
        return ApiKey(name, scope, created), f"lk-{key_id}-{secret}"

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        query = "SELECT name, scope, created_at, revoked_at FROM api_keys"
        if not include_revoked:
            query += " WHERE revoked_at IS NULL"
        conn = self._connect()
        try:
            rows = conn.execute(query + " ORDER BY created_at, name").fetchall()
        finally:
            conn.close()
        return [ApiKey(*row) for row in rows]

    def revoke(self, name: str) -> ApiKey:
        """Revoke the active key ``name``; it stops working on the next request."""
        revoked = datetime.now(UTC).isoformat(timespec="seconds")
        conn = self._connect()
        try:
            row = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL "
                "RETURNING name, scope, created_at, revoked_at",
                (revoked, name),
            ).fetchone()
        finally:
            conn.close()
        if row is None:
            raise NotFoundError(f"no active API key named {name!r}", hint="see leptonkit keys list")
        return ApiKey(*row)

    def authenticate(self, key: str) -> ApiKey | None:
        """The active key that ``key`` is, or ``None`` (malformed, unknown, wrong secret or revoked)."""
        match = _KEY_FORMAT.match(key)
        if match is None:
            return None
        key_id, secret = match.groups()
        row = (
            self._reader()
            .execute("SELECT name, scope, created_at, revoked_at, salt, hash FROM api_keys WHERE key_id = ?", (key_id,))
            .fetchone()
        )
        if row is None or not hmac.compare_digest(_digest(row[4], secret), row[5]) or row[3] is not None:
            return None
        return ApiKey(*row[:4])
