"""The operations layer on a real uvicorn server: auth matrix, audit log, rate limits, size and stream limits."""

from __future__ import annotations

import json

import httpx
import pytest

from leptonkit.security.keys import KeyStore
from tests.security.server import OPS_APP, run_server


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("ops-home")
    store = KeyStore(home)
    out = {"home": home}
    for name, scope in (("admin", "admin"), ("inference", "inference"), ("revoked", "inference")):
        out[name] = store.create(name, scope)[1]
    store.revoke("revoked")
    out["wrong"] = out["inference"][:-4] + ("AAAA" if not out["inference"].endswith("AAAA") else "BBBB")
    return out


def _serve(keys: dict, tmp_path_factory, **settings):
    env = {"LEPTONKIT_HOME": str(keys["home"]), "LEPTONKIT_TEST_OPS": json.dumps(settings)}
    return run_server(OPS_APP, tmp_path_factory.mktemp("log") / "server.log", env=env)


@pytest.fixture(scope="module")
def secured(keys, tmp_path_factory):
    with _serve(keys, tmp_path_factory, auth="on") as server:
        yield server


ECHO = {"prompt": "hello there"}
ROUTES = [
    ("GET", "/health", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
    ("POST", "/v1/echo", ECHO),
    ("POST", "/v1/adapters", None),
]
# who -> status per route above
EXPECTED = {
    None: [200, 401, 401, 401, 401, 401],
    "wrong": [200, 401, 401, 401, 401, 401],
    "revoked": [200, 401, 401, 401, 401, 401],
    "inference": [200, 200, 200, 200, 200, 403],
    "admin": [200, 200, 200, 200, 200, 200],
}


@pytest.mark.parametrize("who", list(EXPECTED))
def test_auth_matrix(secured, keys, who):
    headers = {"Authorization": f"Bearer {keys[who]}"} if who else {}
    got = [httpx.request(m, secured.url + p, json=b, headers=headers).status_code for m, p, b in ROUTES]
    assert got == EXPECTED[who]


def test_refusals_are_openai_errors_and_audited(secured, keys):
    missing = httpx.post(secured.url + "/v1/echo", json=ECHO, headers={"X-Request-ID": "audit-me-1"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["type"] == "authentication_error" and "leptonkit keys create" in missing.text
    assert missing.headers["x-request-id"] == "audit-me-1"
    denied = httpx.post(secured.url + "/v1/adapters", headers={"Authorization": f"Bearer {keys['inference']}"})
    assert denied.json()["error"]["code"] == "insufficient_scope"
    assert httpx.post(secured.url + "/v1/adapters", headers={"Authorization": f"Bearer {keys['admin']}"}).is_success
    events = [json.loads(line) for line in (keys["home"] / "audit.log").read_text().splitlines()]
    assert any(e["event"] == "auth_failure" and e["request_id"] == "audit-me-1" for e in events)
    assert any(e["event"] == "permission_denied" and e["key"] == "inference" for e in events)
    assert any(e["event"] == "admin_action" and e["key"] == "admin" and e["status"] == 200 for e in events)
    assert not any(keys[k] in json.dumps(events) for k in ("admin", "inference", "wrong"))


def test_revocation_takes_effect_on_the_next_request(secured, keys):
    store = KeyStore(keys["home"])
    _, key = store.create("short-lived", "inference")
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.post(secured.url + "/v1/echo", json=ECHO, headers=headers).status_code == 200
    store.revoke("short-lived")
    assert httpx.post(secured.url + "/v1/echo", json=ECHO, headers=headers).status_code == 401


def test_loopback_defaults_to_no_auth_and_public_metrics_flag(keys, tmp_path_factory):
    with _serve(keys, tmp_path_factory, metrics_public=True, auth="on") as server:
        assert httpx.get(server.url + "/metrics").status_code == 200
        assert httpx.get(server.url + "/openapi.json").status_code == 401
    with _serve(keys, tmp_path_factory) as server:  # host 127.0.0.1, --auth unset
        assert httpx.post(server.url + "/v1/echo", json=ECHO).status_code == 200


def test_size_and_request_rate_limits(keys, tmp_path_factory):
    """The limits the access middleware applies before a route runs; the ones that read what a request asks for
    (max_tokens cap, sequences, tokens, streams) are tested on the real server in tests/serve/test_limits.py."""
    settings = {"auth": "on", "rate_limit_rpm": 4, "max_body_bytes": 2000}
    with _serve(keys, tmp_path_factory, **settings) as server:
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        too_big = httpx.post(server.url + "/v1/echo", json={"prompt": "x" * 5000}, headers=admin)
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "body_too_large"
        # requests per minute: the admin key has used 1 of 4; the inference key's bucket is separate
        statuses = [httpx.post(server.url + "/v1/echo", json=ECHO, headers=admin).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        user = {"Authorization": f"Bearer {keys['inference']}"}
        assert httpx.post(server.url + "/v1/echo", json=ECHO, headers=user).status_code == 200
        metrics = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {keys['revoked']}"})
        assert metrics.status_code == 401


def test_auth_defaults_on_for_any_non_loopback_bind():
    from leptonkit.serve.authentication import auth_required

    assert [auth_required(None, h) for h in ("127.0.0.1", "::1", "localhost")] == [False, False, False]
    assert [auth_required(None, h) for h in ("0.0.0.0", "::", "10.1.2.3", "myhost.example")] == [True] * 4
    assert auth_required("on", "127.0.0.1") and not auth_required("off", "0.0.0.0")
