"""API keys: salted hashes only, constant-time check, revocation, and the ``leptonkit keys`` CLI."""

from __future__ import annotations

import sqlite3

import pytest

from leptonkit.errors import ConflictError, InvalidInputError, NotFoundError
from leptonkit.security.keys import KeyStore


def test_key_is_stored_only_as_a_salted_hash(home):
    store = KeyStore(home)
    _, key_a = store.create("a", "inference")
    _, key_b = store.create("b", "inference")
    raw = (home / "registry.db").read_bytes()
    for key in (key_a, key_b):
        assert key.encode() not in raw and key.split("-", 2)[2].encode() not in raw
    rows = sqlite3.connect(home / "registry.db").execute("SELECT salt, hash FROM api_keys").fetchall()
    assert rows[0][0] != rows[1][0] and rows[0][1] != rows[1][1]
    assert store.authenticate(key_a).name == "a"
    assert store.authenticate(key_b).scope == "inference"


def test_wrong_malformed_and_revoked_keys_are_refused(home):
    store = KeyStore(home)
    _, key = store.create("ops", "admin")
    prefix, key_id, secret = key.split("-", 2)
    tampered = f"{prefix}-{key_id}-{'A' if secret[0] != 'A' else 'B'}{secret[1:]}"
    assert store.authenticate(tampered) is None
    assert store.authenticate("lk-0000000000000000-" + secret) is None
    assert store.authenticate("not a key") is None
    store.revoke("ops")
    assert store.authenticate(key) is None
    assert [k.name for k in store.list()] == [] and store.list(include_revoked=True)[0].revoked_at


def test_bad_names_scopes_and_duplicates_are_user_errors(home):
    store = KeyStore(home)
    with pytest.raises(InvalidInputError, match="scope"):
        store.create("x", "root")
    with pytest.raises(InvalidInputError, match="key name"):
        store.create("has space", "admin")
    store.create("x", "admin")
    with pytest.raises(ConflictError, match="already exists"):
        store.create("x", "inference")
    with pytest.raises(NotFoundError):
        store.revoke("nobody")
    store.revoke("x")
    assert store.create("x", "inference")[0].scope == "inference"  # a name is reusable once revoked


def test_keys_cli_prints_the_key_once_and_audits(cli, home):
    created = cli("keys", "create", "--name", "ci", "--scope", "admin", "--json")
    assert created.returncode == 0, created.stderr
    data = created.json()
    assert data["name"] == "ci" and data["scope"] == "admin" and data["key"].startswith("lk-")
    assert KeyStore(home).authenticate(data["key"]).name == "ci"
    listed = cli("keys", "list", "--json")
    assert [k["name"] for k in listed.json()] == ["ci"] and data["key"] not in listed.stdout
    bad = cli("keys", "create", "--name", "z", "--scope", "root")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: invalid scope 'root' (use one of inference, admin)"
    assert cli("keys", "revoke", "ci").returncode == 0
    again = cli("keys", "revoke", "ci")
    assert again.returncode == 2 and "no active API key named 'ci'" in again.stderr
    audit = (home / "audit.log").read_text()
    assert '"event": "key_created"' in audit and '"event": "key_revoked"' in audit and data["key"] not in audit
