"""Per-key limits on the real server with real generation and real token counts: the ``max_tokens`` cap however a
request spells it, rate limits that count sequences (prompts x n) and tokens, concurrent streams however ``stream``
is spelled, and a disconnect that frees its stream slot. Each was walked around before the body was parsed once."""

from __future__ import annotations

import codecs
import json
import math
import time

import httpx
import pytest

from tests.serve.conftest import inference_keys, serve_thread

PROMPT = {"model": "tiny", "prompt": "Hello world", "temperature": 0, "ignore_eos": True}


@pytest.fixture(scope="module")
def keys(served_home) -> dict[str, dict[str, str]]:
    keys = inference_keys(served_home, "limits", "abcd")
    return {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}


def _limited(served_home, **limits):
    return serve_thread(models=["tiny"], home=str(served_home), dtype="float32", auth="on", max_num_seqs=8, **limits)


def _post(client: httpx.Client, headers: dict, body: dict | bytes) -> httpx.Response:
    if isinstance(body, bytes):
        return client.post("/v1/completions", content=body, headers=headers | {"content-type": "application/json"})
    return client.post("/v1/completions", json=body, headers=headers)


def test_max_tokens_cap_holds_however_the_request_spells_it(served_home, keys):
    bom = codecs.BOM_UTF8 + json.dumps(PROMPT | {"max_tokens": 40}).encode()
    spellings = [
        PROMPT | {"max_tokens": 40},
        PROMPT | {"max_tokens": 40.0},
        PROMPT | {"max_tokens": "40"},
        PROMPT | {"max_completion_tokens": "40"},
        bom,
    ]
    with _limited(served_home, max_tokens_cap=8) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for body in spellings:
            refused = _post(client, keys["a"], body)
            assert refused.status_code == 400, (body, refused.text)
            assert refused.json()["error"]["code"] == "max_tokens_too_large", body
        # without max_tokens a request gets the cap, not the rest of the context (streamed or not)
        answer = _post(client, keys["a"], PROMPT)
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 8
        streamed = _post(client, keys["a"], PROMPT | {"stream": True, "stream_options": {"include_usage": True}})
        usage = [json.loads(line[6:]) for line in streamed.text.splitlines() if '"usage"' in line][-1]["usage"]
        assert usage["completion_tokens"] == 8
        assert _post(client, keys["a"], PROMPT | {"max_tokens": 8.0}).status_code == 200


def test_blocklist_reads_the_prompt_behind_a_byte_order_mark(served_home):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "tell me about the Forbidden Topic"}]}
    raw = codecs.BOM_UTF8 + json.dumps(body | {"max_tokens": 4}).encode()
    headers = {"content-type": "application/json"}
    policy = {"safety_blocklist": ["forbidden topic"]}
    with serve_thread(models=["tiny"], home=str(served_home), dtype="float32", **policy) as s:
        refused = httpx.post(s.url + "/v1/chat/completions", content=raw, headers=headers, timeout=60)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "content_filter"
        allowed = raw.replace(b"Forbidden Topic", b"weather")
        assert httpx.post(s.url + "/v1/chat/completions", content=allowed, headers=headers, timeout=60).is_success


def test_rate_limits_count_sequences_and_real_tokens(served_home, keys):
    limits = {"rate_limit_rpm": 20, "rate_limit_tpm": 400}
    with _limited(served_home, **limits) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        # 32 sequences can never fit in 20 per minute: 400 before anything is queued
        never = _post(client, keys["a"], PROMPT | {"prompt": ["Hello", "world"], "n": 16, "max_tokens": 1})
        assert never.status_code == 400 and never.json()["error"]["code"] == "requests_per_minute"
        # 16 sequences use 16 of the 20: a request of 8 more waits (one request, but 8 sequences)
        many = PROMPT | {"prompt": ["Hello", "world", "fox", "dog"], "n": 4, "max_tokens": 2}
        assert _post(client, keys["b"], many).status_code == 200
        refused = _post(client, keys["b"], PROMPT | {"n": 8, "max_tokens": 1})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "requests_per_minute"
        assert int(refused.headers["retry-after"]) >= 1
        assert _post(client, keys["c"], PROMPT | {"n": 8, "max_tokens": 1}).status_code == 200  # other key
        # tokens: a worst case over 400 never fits; one that fits is charged its real count when it ends
        huge = _post(client, keys["d"], PROMPT | {"n": 8, "max_tokens": 60})
        assert huge.status_code == 400 and huge.json()["error"]["code"] == "tokens_per_minute"
        started = time.monotonic()
        done = _post(client, keys["d"], PROMPT | {"n": 2, "max_tokens": 100})
        assert done.status_code == 200
        used, prompt_tokens = done.json()["usage"]["total_tokens"], done.json()["usage"]["prompt_tokens"]
        again = _post(client, keys["d"], PROMPT | {"n": 3, "max_tokens": 100})
        assert again.status_code == 429 and again.json()["error"]["code"] == "tokens_per_minute"
        # the bucket holds 400 - used (plus what refilled since): Retry-After is the wait for the worst case
        expected = math.ceil((3 * (prompt_tokens + 100) - (400 - used)) * 60 / 400)
        refilled_seconds = time.monotonic() - started
        assert expected - refilled_seconds - 1 <= int(again.headers["retry-after"]) <= expected


def _long_stream(stream) -> dict:
    """A streamed request long enough to still be generating while the test sends others (64 sequences)."""
    return PROMPT | {"prompt": ["Hello", "world", "fox", "dog"], "n": 16, "max_tokens": 100, "stream": stream}


def test_stream_limit_counts_every_spelling_of_stream_and_frees_slots(served_home, keys):
    limits = {"max_streams_per_key": 1, "max_queue": 256}
    with _limited(served_home, **limits) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        with client.stream("POST", "/v1/completions", json=_long_stream(True), headers=keys["a"]) as first:
            assert first.status_code == 200
            lines = first.iter_lines()
            next(lines)
            for spelling in ("true", 1, True):
                second = _post(client, keys["a"], _long_stream(spelling) | {"n": 1, "max_tokens": 2})
                assert second.status_code == 429, (spelling, second.text)
                assert second.json()["error"]["code"] == "concurrent_streams"
            other = _post(client, keys["b"], _long_stream(1) | {"n": 1, "max_tokens": 2})
            assert other.status_code == 200 and other.text.rstrip().endswith("data: [DONE]")
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        # a client that drops its stream after the first chunk frees its slot
        with client.stream("POST", "/v1/completions", json=_long_stream(True), headers=keys["a"]) as dropped:
            next(dropped.iter_lines())
        deadline = time.monotonic() + 30
        while (again := _post(client, keys["a"], _long_stream("1") | {"n": 1, "max_tokens": 2})).status_code == 429:
            assert time.monotonic() < deadline, "the dropped stream's slot was never freed"
            time.sleep(0.1)
        assert again.status_code == 200
        metrics = client.get("/metrics", headers=keys["a"]).text
        assert "leptonkit_streams_active 0.0" in metrics


def test_encoder_requests_count_one_request_per_input(served_home, keys):
    config = {"models": ["minilm"], "home": str(served_home), "auth": "on", "rate_limit_rpm": 4}
    with serve_thread(**config) as server, httpx.Client(base_url=server.url, timeout=60) as client:

        def embed(texts: list[str]) -> httpx.Response:
            return client.post("/v1/embeddings", json={"model": "minilm", "input": texts}, headers=keys["a"])

        never = embed(["one", "two", "three", "four", "five"])
        assert never.status_code == 400 and never.json()["error"]["code"] == "requests_per_minute"
        assert embed(["one", "two", "three"]).status_code == 200  # the refused request counted one
        refused = embed(["one"])
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "requests_per_minute"
