"""The operations layer on the real serving app (tiny models, real uvicorn on 127.0.0.1): every route by every
kind of caller, admin scope on adapter routes, TLS with a self-signed certificate."""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import ssl

import httpx
import pytest

from leptonkit.security.keys import KeyStore
from tests.serve.conftest import serve_thread

OPEN = {"/health", "/ready"}
UNLISTED = [("GET", "/docs"), ("GET", "/redoc"), ("GET", "/openapi.json")]


@pytest.fixture(scope="module")
def keys(served_home) -> dict[str, str]:
    store = KeyStore(served_home)
    out = {
        name: store.create(f"ops-{name}", scope)[1]
        for name, scope in (("admin", "admin"), ("inference", "inference"), ("revoked", "admin"))
    }
    store.revoke("ops-revoked")
    out["wrong"] = out["admin"][:-6] + ("x" * 6 if not out["admin"].endswith("x" * 6) else "y" * 6)
    return out


@pytest.fixture(scope="module")
def secured(served_home, keys):
    with serve_thread(
        models=["tiny", "minilm"],
        adapters={"sql": "sql"},
        home=str(served_home),
        dtype="float32",
        auth="on",
        max_num_seqs=4,
        max_tokens_cap=16,
        max_prompt_tokens=100,
    ) as server:
        yield server


def _routes(app) -> list[tuple[str, str, bool]]:
    """(method, concrete path, admin) for every route in the app's schema, plus the unlisted docs routes."""
    out = []
    for template, operations in app.openapi()["paths"].items():
        path = template.replace("{name}", "nope").replace("{model}", "nope")
        for verb, operation in operations.items():
            out.append((verb.upper(), path, "admin" in (operation.get("tags") or ())))
    return out + [(m, p, False) for m, p in UNLISTED]


def test_auth_matrix_over_every_route(secured, keys):
    routes = _routes(secured.app)
    assert {("POST", "/v1/adapters", True), ("DELETE", "/v1/adapters/nope", True)} <= set(routes)
    assert {p for _, p, _ in routes} >= {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/metrics"}
    failures = []
    with httpx.Client(base_url=secured.url, timeout=60) as client:
        for who in (None, "wrong", "revoked", "inference", "admin"):
            headers = {"Authorization": f"Bearer {keys[who]}"} if who else {}
            for method, path, admin in routes:
                body = {"model": "nope", "prompt": "hi", "max_tokens": 1} if method == "POST" else None
                status = client.request(method, path, json=body, headers=headers).status_code
                if who in (None, "wrong", "revoked") and path not in OPEN:
                    expected_ok = status == 401
                elif admin and who != "admin":
                    expected_ok = status == 403
                else:
                    expected_ok = status not in (401, 403)
                if not expected_ok:
                    failures.append((who, method, path, status))
    assert failures == []


def test_openai_client_with_a_key_and_admin_only_adapter_routes(secured, keys):
    from openai import AuthenticationError, OpenAI, PermissionDeniedError

    user = OpenAI(base_url=f"{secured.url}/v1", api_key=keys["inference"], max_retries=0, timeout=60)
    answer = user.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0)
    assert answer.usage.completion_tokens >= 1
    too_long = httpx.post(
        f"{secured.url}/v1/completions",
        json={"model": "tiny", "prompt": "Hello world " * 60},
        headers={"Authorization": f"Bearer {keys['inference']}"},
        timeout=60,
    )
    assert too_long.status_code == 400 and "accepts at most 100" in too_long.json()["error"]["message"]
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{secured.url}/v1", api_key=keys["revoked"], max_retries=0).models.list()
    with pytest.raises(PermissionDeniedError):
        user.post("/adapters", body={"ref": "poet:1", "name": "poet"}, cast_to=object)
    admin = httpx.post(
        f"{secured.url}/v1/adapters",
        json={"ref": "poet:1", "name": "poet"},
        headers={"Authorization": f"Bearer {keys['admin']}"},
        timeout=60,
    )
    assert admin.status_code == 201, admin.text
    # adapters load from the registry only: a filesystem path in the request is refused, not loaded
    by_path = httpx.post(
        f"{secured.url}/v1/adapters",
        json={"ref": "/etc", "name": "evil"},
        headers={"Authorization": f"Bearer {keys['admin']}"},
        timeout=60,
    )
    assert 400 <= by_path.status_code < 500


def _self_signed(folder) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_tls_with_a_self_signed_certificate(served_home, keys, tmp_path):
    pytest.importorskip("cryptography", reason="TLS test needs the cryptography package")
    cert, key = _self_signed(tmp_path)
    with serve_thread(
        models=["minilm"], home=str(served_home), ssl_certfile=cert, ssl_keyfile=key, auth="on"
    ) as server:
        url = server.url.replace("http://", "https://")
        trusted = ssl.create_default_context(cafile=cert)
        headers = {"Authorization": f"Bearer {keys['inference']}"}
        response = httpx.post(
            url + "/v1/embeddings", json={"model": "minilm", "input": "hi"}, headers=headers, verify=trusted, timeout=60
        )
        assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 384
        with pytest.raises(httpx.ConnectError):  # an unknown certificate is refused by a verifying client
            httpx.get(url + "/health", timeout=10)
        with pytest.raises(httpx.HTTPError):  # and plain HTTP is not served on the TLS port
            httpx.get(server.url + "/health", timeout=10)


def test_schemathesis_fuzzes_every_route_without_a_5xx(secured, keys):
    """500+ generated requests (valid and invalid) across all routes of /openapi.json: no 5xx, schema-conformant."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    auth = {"Authorization": f"Bearer {keys['admin']}"}
    schema = schemathesis.openapi.from_url(f"{secured.url}/openapi.json", headers=auth)
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    strategy = st.one_of(*(schema.as_strategy(generation_mode=mode) for mode in modes))
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    seen: dict[str, int] = {}
    statuses: set[int] = set()

    @settings(max_examples=550, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def fuzz(case) -> None:
        response = case.call_and_validate(base_url=secured.url, headers=auth, checks=checks, timeout=60)
        seen[case.operation.label] = seen.get(case.operation.label, 0) + 1
        statuses.add(response.status_code)

    fuzz()
    assert sum(seen.values()) >= 500
    assert {200, 400} <= statuses and max(statuses) < 500, statuses
    print(statuses, seen)
    assert len(seen) == sum(len(ops) for ops in secured.app.openapi()["paths"].values()), seen


def test_safety_policy_blocks_output_and_refuses_flagged_input(served_home, secured, keys):
    body = {"model": "tiny", "prompt": "Hello world", "max_tokens": 16, "temperature": 0, "ignore_eos": True}
    auth = {"Authorization": f"Bearer {keys['inference']}"}
    baseline = httpx.post(secured.url + "/v1/completions", json=body, headers=auth, timeout=60)
    baseline_text = baseline.json()["choices"][0]["text"]  # the same greedy output, without a policy
    words = [w for w in baseline_text.split() if len(w) >= 3]
    if not words:
        pytest.skip(f"the tiny model's greedy output has no word to block: {baseline_text!r}")
    blocked_word = words[len(words) // 2]
    blocklist = [re.escape(blocked_word), "forbidden topic"]
    with serve_thread(models=["tiny"], home=str(served_home), dtype="float32", safety_blocklist=blocklist) as server:
        answer = httpx.post(server.url + "/v1/completions", json=body, timeout=60).json()
        choice = answer["choices"][0]
        assert choice["finish_reason"] == "content_filter" and blocked_word not in choice["text"]
        with httpx.stream("POST", server.url + "/v1/completions", json=body | {"stream": True}, timeout=60) as r:
            streamed = r.read().decode()
        assert '"finish_reason":"content_filter"' in streamed and "[DONE]" in streamed
        refused = httpx.post(
            server.url + "/v1/chat/completions",
            timeout=60,
            json={"model": "tiny", "messages": [{"role": "user", "content": "tell me about the Forbidden Topic"}]},
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "content_filter" and "safety policy" in refused.text
        metrics = httpx.get(server.url + "/metrics").text
        assert 'leptonkit_content_filtered_total{action="output_blocked"}' in metrics


def test_safety_classifier_from_the_registry_flags_input(served_home):
    # The tiny sentiment model stands in for a safety classifier: "negative" at threshold 0 flags every text.
    with serve_thread(
        models=["tiny", "sentiment"],
        home=str(served_home),
        dtype="float32",
        safety_classifier="sentiment",
        safety_unsafe_labels=["negative"],
        safety_threshold=0.0,
    ) as server:
        refused = httpx.post(
            server.url + "/v1/completions", timeout=60, json={"model": "tiny", "prompt": "hello", "max_tokens": 2}
        )
        assert refused.status_code == 400 and "classified unsafe" in refused.json()["error"]["message"]
    from leptonkit.errors import InvalidInputError
    from leptonkit.serve.app import create_app
    from leptonkit.serve.config import ServeConfig

    with pytest.raises(InvalidInputError, match="has no label"):
        create_app(ServeConfig(models=["tiny"], home=str(served_home), safety_classifier="sentiment"))


EMAIL, CARD, NAME = "olivia.nakamura@example.org", "4111 1111 1111 1111", "Olivia Nakamura"


def test_no_personal_data_in_logs_of_the_real_server(secured, keys, served_home):
    """Requests full of e-mails, card numbers and names through every kind of route: no raw value in any line."""
    import logging

    from leptonkit.monitor.logging import ACCESS_LOGGER, JsonFormatter

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    handler = Collect()
    loggers = [logging.getLogger(ACCESS_LOGGER), logging.getLogger()]
    for logger in loggers:
        logger.addHandler(handler)
    text = f"My name is {NAME}, mail {EMAIL}, card {CARD}."
    auth = {"Authorization": f"Bearer {keys['inference']}", "X-Request-ID": "pii-1"}
    try:
        with httpx.Client(base_url=secured.url, timeout=60) as client:
            chat = {"model": "tiny", "messages": [{"role": "user", "content": text}], "max_tokens": 4}
            assert client.post("/v1/chat/completions", json=chat, headers=auth).status_code in (200, 400)
            stream = {"model": "tiny", "prompt": text, "max_tokens": 5, "stream": True, "ignore_eos": True}
            assert client.post("/v1/completions", json=stream, headers=auth | {"X-Request-ID": "pii-2"}).is_success
            assert client.post("/v1/embeddings", json={"model": "minilm", "input": [text]}, headers=auth).is_success
            assert client.post("/v1/classify", json={"model": text, "input": text}, headers=auth).status_code >= 400
            assert (
                client.post(
                    "/v1/completions", json={"model": "tiny", "prompt": text, "max_tokens": EMAIL}, headers=auth
                ).status_code
                == 400
            )
            assert (
                client.post("/v1/embeddings", json={"input": text}, headers={"Authorization": text}).status_code == 401
            )
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    logged = "\n".join(lines) + (served_home / "audit.log").read_text()
    assert "pii-1" in logged and "pii-2" in logged
    # the card's digits in any grouping; a bare "4111" would also match random hex request ids
    for value in (EMAIL, CARD, NAME, "Olivia", CARD.replace(" ", ""), "4111 1111", "4111-1111"):
        assert value not in logged
    streamed = next(json.loads(line) for line in lines if '"pii-2"' in line)
    assert streamed["completion_tokens"] == 5 and streamed["prompt_tokens"] > 5 and streamed["model"] == "tiny"


def test_ready_is_503_while_a_queue_is_saturated(served_home):
    import asyncio

    with serve_thread(models=["tiny"], home=str(served_home), dtype="float32", max_num_seqs=1, max_queue=1) as server:

        async def scenario() -> set[str]:
            body = {"model": "tiny", "prompt": "Hello", "max_tokens": 40, "ignore_eos": True}
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                seen = set()
                # the first request holds the only running slot (its first token has arrived) before the second
                # one takes the only queue place: only then is the queue saturated, whatever the machine's speed
                async with client.stream("POST", "/v1/completions", json=body | {"stream": True}) as first:
                    lines = first.aiter_lines()
                    assert (await anext(lines)).startswith("data:")
                    second = asyncio.create_task(client.post("/v1/completions", json=body))
                    while not second.done():
                        seen.add((await client.get("/ready")).json()["status"])
                        await asyncio.sleep(0.01)
                    assert first.status_code == 200
                    async for _ in lines:
                        pass
                assert second.result().status_code == 200
                seen.add("after:" + (await client.get("/ready")).json()["status"])
                return seen

        seen = asyncio.run(scenario())
    assert "saturated" in seen and "after:ready" in seen
