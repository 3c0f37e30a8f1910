"""Bad requests get a 4xx in OpenAI's error shape, never a 5xx, and the server keeps serving."""

from __future__ import annotations

import httpx
import pytest

CHAT = "/v1/chat/completions"
GOOD = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}

CASES = [
    ("malformed json", CHAT, b'{"model": "tiny", "messages": [', 400, "not valid JSON"),
    ("invalid utf-8", CHAT, b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400, "UTF-8"),
    ("lone surrogate", CHAT, b'{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}]}', 400, "UTF-8"),
    ("wrong type", CHAT, GOOD | {"temperature": "hot"}, 400, "temperature"),
    ("negative max_tokens", CHAT, GOOD | {"max_tokens": -5}, 400, "max_tokens"),
    ("huge max_tokens", CHAT, GOOD | {"max_tokens": 10**9}, 400, "exceed the model's context of 128 tokens"),
    ("prompt too long", "/v1/completions", {"model": "tiny", "prompt": "word " * 400}, 400, "context is 128"),
    ("unknown model", CHAT, GOOD | {"model": "nope"}, 404, "model nope is not served"),
    ("unknown adapter", CHAT, GOOD | {"model": "tiny:nope"}, 404, "tiny:nope"),
    ("empty messages", CHAT, GOOD | {"messages": []}, 400, "messages"),
    ("missing field", CHAT, {"model": "tiny"}, 400, "messages"),
    ("bad role", CHAT, GOOD | {"messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
    ("encoder on chat", CHAT, GOOD | {"model": "sentiment"}, 400, "needs a generator"),
    ("generator on classify", "/v1/classify", {"model": "tiny", "input": "x"}, 400, "needs a classification"),
    ("empty input list", "/v1/classify", {"model": "sentiment", "input": []}, 400, "input"),
    ("token id out of range", "/v1/completions", {"model": "tiny", "prompt": [1, 99999]}, 400, "token ids"),
    ("too many stops", CHAT, GOOD | {"stop": [str(i) for i in range(20)]}, 400, "stop"),
    ("unknown route", "/v1/nothing", GOOD, 404, "/v1/nothing"),
    ("nested 10,000 deep", CHAT, b'{"model": "tiny", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", 400, "too deeply"),
    ("array nested deep", CHAT, b"[" * 10_000 + b"]" * 10_000, 400, "too deeply"),
]


@pytest.mark.parametrize(("body_path", "body", "status", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_request_is_a_clear_4xx(server, body_path, body, status, needle):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        if isinstance(body, bytes):
            response = client.post(body_path, content=body, headers={"content-type": "application/json"})
        else:
            response = client.post(body_path, json=body)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert needle in error["message"] or needle == error["param"], error
        # the server still serves
        assert client.post(CHAT, json=GOOD).status_code == 200


IMAGE = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "https://x/a.png"}}]
COMPLETE = {"model": "tiny", "prompt": "hi", "max_tokens": 3}
# a field OpenAI defines (or vLLM adds) that leptonkit does not implement: a 400 whose param is the request field
REFUSED = [
    ("suffix", "/v1/completions", COMPLETE | {"suffix": "!"}),
    ("echo", "/v1/completions", COMPLETE | {"echo": True}),
    ("best_of", "/v1/completions", COMPLETE | {"best_of": 3}),
    ("audio", CHAT, GOOD | {"audio": {"voice": "alloy", "format": "wav"}}),
    ("modalities[1]", CHAT, GOOD | {"modalities": ["text", "audio"]}),
    ("prediction", CHAT, GOOD | {"prediction": {"type": "content", "content": "hi"}}),
    ("store", CHAT, GOOD | {"store": True}),
    ("metadata", CHAT, GOOD | {"metadata": {"team": "a"}}),
    ("service_tier", CHAT, GOOD | {"service_tier": "flex"}),
    ("reasoning_effort", CHAT, GOOD | {"reasoning_effort": "low"}),
    ("web_search_options", CHAT, GOOD | {"web_search_options": {}}),
    ("min_p", CHAT, GOOD | {"min_p": 0.1}),  # vLLM's extensions: accepted only where implemented
    ("use_beam_search", CHAT, GOOD | {"use_beam_search": True}),
    ("stream_options.include_obfuscation", CHAT, GOOD | {"stream_options": {"include_obfuscation": False}}),
    ("stream_options", CHAT, GOOD | {"stream_options": {"include_usage": True}}),  # without stream: true
    ("top_logprobs", CHAT, GOOD | {"top_logprobs": 2}),  # without logprobs: true
    ("messages[0].content[1]", CHAT, GOOD | {"messages": [{"role": "user", "content": IMAGE}]}),
    ("messages[0].audio", CHAT, GOOD | {"messages": [{"role": "user", "content": "hi", "audio": {"id": "a"}}]}),
    ("dimensions", "/v1/embeddings", {"model": "minilm", "input": "hi", "dimensions": 64}),
    ("logit_bias", CHAT, GOOD | {"logit_bias": {"99999": 5}}),
    ("logit_bias.5", CHAT, GOOD | {"logit_bias": {"5": 500}}),
    ("stop_token_ids", CHAT, GOOD | {"stop_token_ids": [99999]}),
    ("min_tokens", CHAT, GOOD | {"min_tokens": 10}),  # more than max_tokens
    ("repetition_penalty", CHAT, GOOD | {"repetition_penalty": 0}),
]


@pytest.mark.parametrize(("param", "path", "body"), REFUSED, ids=[case[0] for case in REFUSED])
def test_an_unsupported_field_is_a_400_naming_it(server, param, path, body):
    response = httpx.post(server.url + path, json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"].startswith(param), error
    assert error["type"] == "invalid_request_error"
