"""The console over plain HTTP (httpx against a real uvicorn server, no browser, no model served): cookie flags,
CSP, CSRF, expired and revoked sessions, a damaged version, a run log cut mid-line, and ``leptonkit runs``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LEPTONKIT, REPO, tiny_bert_config
from tests.security.server import free_port
from tests.serve.conftest import ServerThread

LOGGED_STEPS = 6  # readable lines of the cut log


@dataclass
class Setup:
    home: Path
    url: str
    admin_key: str
    inference_key: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[Setup]:
    """A registry with tiny:1 and tiny:2 (tiny:2's weights truncated afterwards), a run whose log ends in a cut
    line, two keys, and a console server: ``/console`` (30-minute sessions) and ``/short`` (2-second sessions)."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    from leptonkit.console.app import create_console, standalone
    from leptonkit.console.web import ConsoleSettings
    from leptonkit.data import prepare
    from leptonkit.registry import Registry
    from leptonkit.security.keys import KeyStore

    home = tmp_path_factory.mktemp("console-http")
    folder = home.parent / "tiny-model"
    BertForSequenceClassification(tiny_bert_config(["neg", "pos"], vocab_size=64)).save_pretrained(folder)
    run = home / "runs" / "cut-1"
    run.mkdir(parents=True)
    lines = [json.dumps({"step": s, "split": "train", "loss": 2.0 / s, "lr": 1e-3}) for s in range(1, LOGGED_STEPS + 1)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 7, "split": "tr')
    registry = Registry(home)
    registry.register(str(folder), name="tiny", task="classification", lineage={"run_dir": str(run)})
    damaged = registry.register(str(folder), name="tiny", task="classification")
    weights = damaged.path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    adapter = home.parent / "tiny-lora"
    lora = LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"])
    get_peft_model(BertForSequenceClassification.from_pretrained(folder), lora).save_pretrained(adapter)
    registry.register(str(adapter), name="tiny-lora", base="tiny:1", task="classification")
    registry.register(
        str(folder), name="tiny-q8", task="classification", lineage={"quantization": "Q8_0", "quantized_from": "tiny:1"}
    )
    keys = KeyStore(home)
    admin, inference = keys.create("root", "admin")[1], keys.create("reader", "inference")[1]
    prepare(
        [str(REPO / "examples" / "data" / "support_tickets.jsonl")],
        task="classification",
        out=str(home.parent / "datasets" / "tickets"),
    )  # PII masked: counted per type in the manifest
    settings = ConsoleSettings(home=home, data_dirs=[home.parent / "datasets"])
    root = standalone(settings)  # as `leptonkit console --data DIR` serves it: the console at /console
    root.mount("/short", create_console(ConsoleSettings(home=home, session_idle=2.0)))
    with ServerThread(app=root) as running:
        yield Setup(home, running.url, admin, inference)


def login(setup: Setup, key: str, mount: str = "/console") -> httpx.Client:
    client = httpx.Client(base_url=f"{setup.url}{mount}", follow_redirects=False, timeout=30)
    response = client.post("/login", data={"key": key})
    assert response.status_code == 303, response.text
    return client


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def test_the_session_cookie_is_httponly_strict_scoped_and_holds_no_key(setup: Setup) -> None:
    response = httpx.post(f"{setup.url}/console/login", data={"key": setup.admin_key})
    cookie = response.headers["set-cookie"]
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console/" in cookie
    secret = setup.admin_key.split("-", 2)[2]  # lk-ID-SECRET: the secret may hold "-" itself
    assert setup.admin_key not in cookie and secret not in cookie
    client = login(setup, setup.admin_key)
    assert setup.admin_key not in client.get("/registry").text


def test_a_wrong_key_is_refused_on_the_page_and_audited(setup: Setup) -> None:
    response = httpx.post(f"{setup.url}/console/login", data={"key": "lk-0123456789abcdef-wrong"})
    assert response.status_code == 401 and "not valid" in response.text and "set-cookie" not in response.headers
    last = json.loads((setup.home / "audit.log").read_text().splitlines()[-1])
    assert last["event"] == "auth_failure" and last["source"] == "console" and "wrong" not in json.dumps(last)
    assert httpx.get(f"{setup.url}/console/registry").headers["location"] == "/console/login?reason=login"
    assert httpx.get(f"{setup.url}/").headers["location"] == "/console/"


def test_every_console_response_has_a_csp_without_inline_script(setup: Setup) -> None:
    client = login(setup, setup.inference_key)
    responses = [client.get(path) for path in ("/login", "/registry", "/runs", "/static/console.js", "/nope")]
    responses.append(httpx.get(f"{setup.url}/console/api/models"))  # no session: 401 JSON
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 404, 401]
    for response in responses:
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    assert responses[1].headers["cache-control"] == "no-store"
    assert "<script>" not in responses[1].text and " style=" not in responses[1].text


def test_state_changes_need_the_sessions_csrf_token(setup: Setup) -> None:
    from leptonkit.registry import Registry

    client = login(setup, setup.admin_key)
    token = csrf_of(client.get("/registry/tiny").text)
    move = {"alias": "prod", "version": "1", "confirm": "yes"}
    assert client.post("/registry/tiny/alias", data=move).status_code == 403  # no token
    assert client.post("/registry/tiny/alias", data=move | {"csrf": "forged"}).status_code == 403
    other_site = client.post(
        "/registry/tiny/alias", data=move | {"csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403 and "another site" in other_site.text
    assert "prod" not in Registry(setup.home).get("tiny:1").aliases
    chat = client.post("/api/chat", json={"model": "tiny", "messages": []})
    assert chat.status_code == 403 and "CSRF" in chat.json()["error"]["message"]
    moved = client.post("/registry/tiny/alias", data=move | {"csrf": token})
    assert moved.status_code == 303 and "prod" in Registry(setup.home).get("tiny:1").aliases


def test_an_inference_key_cannot_take_admin_actions(setup: Setup) -> None:
    client = login(setup, setup.inference_key)
    token = csrf_of(client.get("/registry").text)
    refused = client.post("/keys/create", data={"name": "sneaky", "scope": "admin", "csrf": token})
    assert refused.status_code == 403 and "admin key" in refused.text
    assert client.get("/audit").status_code == 403
    from leptonkit.security.keys import KeyStore

    assert "sneaky" not in [k.name for k in KeyStore(setup.home).list()]


def test_an_admin_creates_a_key_shown_once_and_revokes_it(setup: Setup) -> None:
    from leptonkit.security.keys import KeyStore

    client = login(setup, setup.admin_key)
    token = csrf_of(client.get("/keys").text)
    created = client.post("/keys/create", data={"name": "ci", "scope": "inference", "csrf": token})
    key = re.search(r'id="new-key-value">([^<]+)<', created.text).group(1)
    assert KeyStore(setup.home).authenticate(key).name == "ci"
    assert key not in client.get("/keys").text  # shown once
    revoked = client.post("/keys/revoke", data={"name": "ci", "confirm": "yes", "csrf": token})
    assert revoked.status_code == 303 and KeyStore(setup.home).authenticate(key) is None
    events = [json.loads(line)["event"] for line in (setup.home / "audit.log").read_text().splitlines()]
    assert events[-2:] == ["key_created", "key_revoked"] and key not in (setup.home / "audit.log").read_text()


def test_an_expired_or_revoked_session_sends_back_to_the_login_page(setup: Setup) -> None:
    from leptonkit.security.keys import KeyStore

    client = login(setup, setup.inference_key, mount="/short")
    assert client.get("/registry").status_code == 200
    time.sleep(2.5)
    expired = client.get("/registry")
    assert expired.status_code == 303 and expired.headers["location"] == "/short/login?reason=expired"
    assert "your session expired" in httpx.get(setup.url + expired.headers["location"]).text
    assert client.get("/api/operations").status_code == 401
    store = KeyStore(setup.home)
    short_lived = store.create("temp", "inference")[1]
    client = login(setup, short_lived)
    store.revoke("temp")
    assert client.get("/runs").headers["location"] == "/console/login?reason=revoked"


def test_a_damaged_version_is_flagged_and_the_registry_keeps_working(setup: Setup) -> None:
    client = login(setup, setup.admin_key)
    assert client.get("/registry").status_code == 200
    page = client.get("/registry/tiny")
    assert page.status_code == 200
    damaged = re.search(r'id="v2">.*?<p class="error damage">([^<]*)', page.text, re.S).group(1)
    assert "model.safetensors: size 100 != recorded" in damaged
    assert 'class="error damage"' not in page.text.split('id="v1"')[1]
    verify = client.post("/registry/tiny/2/verify", data={"csrf": csrf_of(page.text)})
    assert verify.status_code == 303
    assert "tiny:2 is damaged: model.safetensors: size 100" in client.get("/registry/tiny").text


def test_the_lineage_graph_links_run_version_adapter_and_quantised_version(setup: Setup) -> None:
    client = login(setup, setup.inference_key)
    graph = re.search(r'<svg class="lineage".*?</svg>', client.get("/registry/tiny-lora").text, re.S).group(0)
    nodes = dict(re.findall(r'<g class="node" data-kind="([a-z]+)" data-id="([^"]+)"', graph))
    assert sorted(nodes.items()) == [
        ("adapter", "v:tiny-lora:1"),
        ("model", "v:tiny:1"),
        ("quantised", "v:tiny-q8:1"),
        ("run", f"r:{setup.home / 'runs' / 'cut-1'}"),
    ]
    edges = set(re.findall(r'data-from="([^"]+)" data-to="([^"]+)"', graph))
    assert edges == {(nodes["run"], "v:tiny:1"), ("v:tiny:1", "v:tiny-lora:1"), ("v:tiny:1", "v:tiny-q8:1")}
    assert 'href="/console/runs/cut-1"' in graph


def test_the_data_page_shows_a_prepared_datasets_manifest(setup: Setup) -> None:
    manifest = json.loads((setup.home.parent / "datasets" / "tickets" / "manifest.json").read_text())
    page = login(setup, setup.inference_key).get("/data").text
    section = page.split('class="dataset"')[1]
    assert (
        f'class="rows-in">{manifest["rows"]["in"]}<' in section
        and f'class="rows-out">{manifest["rows"]["out"]}<' in section
    )
    shown = dict(
        re.findall(r'data-type="([A-Z_]+)"><td>[A-Z_]+</td><td class="count">(\d+)</td><td>mask</td>', section)
    )
    assert shown == {kind: str(n) for kind, n in manifest["pii"]["counts"].items()} and shown["EMAIL"] != "0"
    for split, info in manifest["splits"].items():
        assert f"<td>{split}</td><td>{info['rows']}</td>" in section


def test_a_run_log_cut_mid_line_is_drawn_up_to_the_cut(setup: Setup) -> None:
    client = login(setup, setup.inference_key)
    page = client.get("/runs/cut-1").text
    assert "1 unreadable" in page and f"line {LOGGED_STEPS + 1}" in page
    chart = re.search(r'<svg class="chart" id="chart-train-loss".*?</svg>', page, re.S).group(0)
    assert chart.count('class="point"') == LOGGED_STEPS
    assert 'href="/console/registry/tiny#v1">tiny:1' in page


def test_runs_list_and_show_in_the_terminal(setup: Setup) -> None:
    env = os.environ | {"LEPTONKIT_HOME": str(setup.home)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*LEPTONKIT, "runs", *args], capture_output=True, text=True, env=env, timeout=120)

    listed = json.loads(run("list", "--json").stdout)
    assert [(r["id"], r["version"], r["steps"]) for r in listed] == [("cut-1", "tiny:1", LOGGED_STEPS)]
    shown = json.loads(run("show", "cut-1", "--json").stdout)
    assert shown["damaged_lines"] == [LOGGED_STEPS + 1] and shown["log_records"] == LOGGED_STEPS
    assert shown["last_train"]["step"] == LOGGED_STEPS
    missing = run("show", "nope")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "leptonkit runs list" in missing.stderr


def test_without_a_server_the_playground_says_how_to_get_one(setup: Setup) -> None:
    client = login(setup, setup.inference_key)
    assert "--server URL" in client.get("/playground").text
    models = client.get("/api/models")
    assert models.status_code == 503 and "--console" in models.json()["error"]["message"]


def test_serve_console_mounts_the_console_beside_the_api_with_the_same_keys(setup: Setup) -> None:
    """``leptonkit serve tiny:1 --console --auth on``: the API wants a bearer key, the console a log-in with one."""
    port = free_port()
    env = os.environ | {"LEPTONKIT_HOME": str(setup.home)}
    command = [*LEPTONKIT, "serve", "tiny:1", "--console", "--auth", "on", "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "leptonkit serve --console did not start"
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert httpx.get(f"{url}/v1/models").status_code == 401  # the API still wants a bearer key
        assert httpx.get(f"{url}/console/registry").headers["location"] == "/console/login?reason=login"
        with httpx.Client(base_url=f"{url}/console", timeout=30) as client:
            assert client.post("/login", data={"key": setup.inference_key}).status_code == 303
            assert [m["id"] for m in client.get("/api/models").json()["data"]] == ["tiny"]  # the server, as the key
    finally:
        proc.terminate()
        proc.wait(timeout=60)
