"""Encoder routes with dynamic batching, and ``leptonkit.Client`` against the same real server."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from prometheus_client import REGISTRY

from leptonkit import Client
from leptonkit.client import ApiError

TEXTS = ["I loved this film.", "Terrible, boring and far too long.", "Angela Merkel visited Paris.", "ok"]


@pytest.fixture(scope="module")
def client(server):
    with Client(server.url) as c:
        yield c


def test_classify_single_and_list(client):
    (single,) = client.classify("I loved this film.", model="sentiment")
    results = client.classify(TEXTS, model="sentiment")
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert results[0]["label"] == single["label"] and results[0]["score"] == pytest.approx(single["score"], abs=1e-5)
    for r in results:
        assert set(r["scores"]) == {"negative", "positive"}
        assert math.isclose(sum(r["scores"].values()), 1.0, abs_tol=1e-4)
        assert r["label"] == max(r["scores"], key=r["scores"].get)


def test_ner_offsets_index_the_input(client):
    for text, entities in zip(TEXTS, client.ner(TEXTS, model="tagger"), strict=True):
        for entity in entities:
            assert text[entity["start"] : entity["end"]] == entity["text"]
            assert entity["type"] in {"PER", "LOC"} and 0 <= entity["score"] <= 1


def test_embeddings_are_normalised_and_semantic(client):
    a, b, c = client.embed(
        ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell."], model="minilm"
    )
    assert len(a) == 384 and math.isclose(sum(x * x for x in a), 1.0, abs_tol=1e-4)
    dot = lambda u, v: sum(x * y for x, y in zip(u, v, strict=True))  # noqa: E731
    assert dot(a, b) > dot(a, c) + 0.3


def test_openai_package_embeddings_match_the_float_route(server, client):
    from openai import OpenAI

    texts = ["A man is playing a guitar.", "The stock market fell."]
    expected = client.embed(texts, model="minilm")
    openai = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    packed = openai.embeddings.create(model="minilm", input=texts)  # sends encoding_format=base64 by default
    for got, want in zip(packed.data, expected, strict=True):
        assert got.embedding == pytest.approx(want, abs=1e-6)
    floats = openai.embeddings.create(model="minilm", input=texts, encoding_format="float")
    assert floats.data[1].embedding == pytest.approx(expected[1], abs=1e-6)
    assert floats.usage.prompt_tokens > 0


def test_concurrent_requests_share_batches_with_identical_results(server, client):
    solo = [client.classify(t, model="sentiment")[0] for t in TEXTS * 4]
    batches = REGISTRY.get_sample_value("leptonkit_batch_size_count", {"model": "sentiment"})
    inputs = REGISTRY.get_sample_value("leptonkit_batch_size_sum", {"model": "sentiment"})

    async def together() -> list[dict]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            responses = await asyncio.gather(
                *(http.post("/v1/classify", json={"model": "sentiment", "input": t}) for t in TEXTS * 4)
            )
        return [r.json()["data"][0] for r in responses]

    concurrent = asyncio.run(together())
    assert [r["label"] for r in concurrent] == [r["label"] for r in solo]
    assert [r["score"] for r in concurrent] == pytest.approx([r["score"] for r in solo], abs=1e-5)
    new_batches = REGISTRY.get_sample_value("leptonkit_batch_size_count", {"model": "sentiment"}) - batches
    new_inputs = REGISTRY.get_sample_value("leptonkit_batch_size_sum", {"model": "sentiment"}) - inputs
    assert new_inputs == 16 and new_batches < 16  # some requests shared a forward


def test_client_chat_complete_and_stream(client):
    reply = client.chat("Hello", model="tiny", max_tokens=6, temperature=0, ignore_eos=True)
    text = reply["choices"][0]["message"]["content"]
    assert (
        "".join(client.chat("Hello", model="tiny", stream=True, max_tokens=6, temperature=0, ignore_eos=True)) == text
    )
    completion = client.complete("Hello", model="sql", max_tokens=5, temperature=0)
    assert completion["model"] == "sql" and completion["usage"]["completion_tokens"] <= 5
    assert {m["id"] for m in client.models()} >= {"tiny", "sql", "minilm"}


def test_client_raises_the_servers_error(client):
    with pytest.raises(ApiError) as info:
        client.classify("x", model="nope")
    assert info.value.http_status == 404 and "nope" in str(info.value)
    with pytest.raises(ApiError, match="max_tokens"):
        list(client.chat("Hello", model="tiny", stream=True, max_tokens=10**6))
