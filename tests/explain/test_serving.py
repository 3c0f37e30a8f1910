"""``explain: true`` on /v1/classify and /v1/ner through a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from leptonkit.explain.explainer import explain

STEPS = 8
TEXT = "Anna Berg loved the quiet streets of Oslo ."


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_classifier, tagger) -> Iterator[tuple[str, object]]:
    """A registry with the tiny random encoders and a real server for them; yields (url, registry)."""
    from leptonkit.registry import Registry
    from leptonkit.serve.config import ServeConfig
    from leptonkit.serve.server import uvicorn_server

    registry = Registry(tmp_path_factory.mktemp("explain-serve-home"))
    for name, loaded in (("sentiment", tiny_classifier), ("tagger", tagger)):
        registry.register(loaded.model, name=name, task=loaded.task, tokenizer=loaded.tokenizer)
    config = ServeConfig(models=["sentiment", "tagger"], home=str(registry.home), port=0, explain_steps=STEPS)
    server = uvicorn_server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", registry
    server.should_exit = True
    thread.join(timeout=60)


def test_classify_returns_the_cli_attributions_with_each_result(served):
    from leptonkit.registry.loading import load_model

    url, registry = served
    body = {"model": "sentiment", "input": [TEXT, "meh"], "explain": True}
    data = httpx.post(f"{url}/v1/classify", json=body, timeout=120).json()["data"]
    local = load_model("sentiment", registry=registry)
    for item, text in zip(data, [TEXT, "meh"], strict=True):
        expected = explain(local, text, label=item["label"], steps=STEPS)["attributions"]
        assert [a["word"] for a in item["attributions"]] == text.split()
        assert [(a["start"], a["end"]) for a in item["attributions"]] == [(a["start"], a["end"]) for a in expected]
        assert [a["score"] for a in item["attributions"]] == pytest.approx([a["score"] for a in expected], abs=1e-5)
    plain = httpx.post(f"{url}/v1/classify", json={"model": "sentiment", "input": TEXT}, timeout=60).json()["data"]
    assert "attributions" not in plain[0] and plain[0]["label"] == data[0]["label"]


def test_ner_entities_carry_attributions(served):
    url, _ = served
    explained = httpx.post(f"{url}/v1/ner", json={"model": "tagger", "input": TEXT, "explain": True}, timeout=120)
    plain = httpx.post(f"{url}/v1/ner", json={"model": "tagger", "input": TEXT}, timeout=60)
    entities = explained.json()["data"][0]["entities"]
    strip = [{k: e[k] for k in ("type", "start", "end")} for e in entities]
    assert strip == [{k: e[k] for k in ("type", "start", "end")} for e in plain.json()["data"][0]["entities"]]
    assert entities, "the random tagger should tag something in this sentence"
    assert all([a["word"] for a in e["attributions"]] == TEXT.split() for e in entities)


def test_explanations_of_bad_input_are_4xx(served):
    url, _ = served
    empty = httpx.post(f"{url}/v1/classify", json={"model": "sentiment", "input": ["ok", " "], "explain": True})
    assert empty.status_code == 400
    assert empty.json()["error"]["message"].startswith("the text to explain is empty")
    wrong_kind = httpx.post(f"{url}/v1/classify", json={"model": "tagger", "input": "x", "explain": True})
    assert wrong_kind.status_code == 400 and "needs a classification model" in wrong_kind.json()["error"]["message"]
