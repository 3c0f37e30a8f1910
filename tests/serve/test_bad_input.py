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
