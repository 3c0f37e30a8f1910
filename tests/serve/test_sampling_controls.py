"""Sampling controls, logprobs bytes, whole characters in streams and the tokenizer endpoints, on a real server with
the real SmolLM2-135M-Instruct (byte-level BPE: most Chinese characters take two tokens), API keys on.

One server for the module; the controlled requests run together in one batch beside plain greedy ones."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest

from tests.serve.conftest import bearer, inference_keys, serve_thread, sse_event

HELLO = "Hello! Hello! Hello! Hello!"  # greedy SmolLM2 goes on: " Hello! Hello! Hello! ..."
FRANCE = [
    {"role": "user", "content": "Answer in one word: the capital of France?"}
]  # "The capital of France is Paris."
CHINESE = "北京是中国的首都，"  # greedy SmolLM2 continues in Chinese


@pytest.fixture(scope="module")
def smol_server(smollm2):
    home, _ = smollm2
    key = inference_keys(home, "controls", ["user"])["user"]
    with serve_thread(models=["smol"], home=str(home), dtype="float32", max_num_seqs=12, auth="on") as server:
        yield server, key


@pytest.fixture(scope="module")
def client(smol_server):
    server, key = smol_server
    with httpx.Client(base_url=server.url, headers=bearer(key), timeout=300) as http:
        yield http


def _batch_steps(client: httpx.Client) -> tuple[float, float]:
    """(sequences, steps) the smol engine has counted so far (``leptonkit_batch_size``)."""
    text = client.get("/metrics").text
    sums = re.search(r'leptonkit_batch_size_sum\{model="smol"\} (\S+)', text)
    counts = re.search(r'leptonkit_batch_size_count\{model="smol"\} (\S+)', text)
    return (float(sums[1]), float(counts[1])) if sums and counts else (0.0, 0.0)


def test_controls_in_a_mixed_batch_change_only_their_own_rows(smol_server, client):
    server, key = smol_server
    comma = client.post("/tokenize", json={"model": "smol", "prompt": ","}).json()["tokens"]
    paris = client.post("/tokenize", json={"model": "smol", "prompt": " Paris"}).json()["tokens"]
    assert len(comma) == len(paris) == 1
    hello = {"model": "smol", "prompt": HELLO, "temperature": 0, "max_tokens": 10, "ignore_eos": True}
    france = {"model": "smol", "messages": FRANCE, "temperature": 0, "max_tokens": 12}
    requests = {
        "hello": ("/v1/completions", hello),
        "france": ("/v1/chat/completions", france),
        "frequency": ("/v1/completions", hello | {"frequency_penalty": 2.0}),
        "presence": ("/v1/completions", hello | {"presence_penalty": 2.0}),
        "repetition": ("/v1/completions", hello | {"repetition_penalty": 1.5}),
        "bias": ("/v1/completions", hello | {"logit_bias": {str(comma[0]): 100}}),
        "min_tokens": ("/v1/chat/completions", france | {"min_tokens": 12}),
        "stop_token": ("/v1/chat/completions", france | {"stop_token_ids": paris}),
        "top_k": ("/v1/completions", hello | {"temperature": 1.5, "top_k": 1, "seed": 3}),
    }

    async def together() -> dict[str, dict]:
        async with httpx.AsyncClient(base_url=server.url, headers=bearer(key), timeout=300) as http:
            answers = await asyncio.gather(*(http.post(path, json=body) for path, body in requests.values()))
        return {name: answer.json() for name, answer in zip(requests, answers, strict=True)}

    before = _batch_steps(client)
    got = asyncio.run(together())
    sequences, steps = (after - first for after, first in zip(_batch_steps(client), before, strict=True))
    assert sequences / steps > 3, "the requests did not share engine steps"
    alone = {
        name: client.post(path, json=body).json()
        for name, (path, body) in requests.items()
        if name in ("hello", "france")
    }

    def text(name: str, answers: dict) -> str:
        choice = answers[name]["choices"][0]
        return choice["text"] if "text" in choice else choice["message"]["content"]

    # rows without controls decode exactly as they do alone
    assert text("hello", got) == text("hello", alone) and text("france", got) == text("france", alone)
    assert text("hello", got).count("Hello") >= 4 and "Paris" in text("france", got)
    for penalty in ("frequency", "presence", "repetition"):  # fewer repeats of what was already said
        assert text(penalty, got).count("Hello") < text("hello", got).count("Hello") - 2, (penalty, text(penalty, got))
    assert text("bias", got) == "," * 10  # +100 forces the token
    assert text("top_k", got) == text("hello", got)  # top_k 1 at temperature 1.5 is greedy
    # min_tokens holds the end of turn back: all 12 tokens instead of stopping after "Paris."
    assert got["france"]["usage"]["completion_tokens"] < 12 and got["france"]["choices"][0]["finish_reason"] == "stop"
    assert got["min_tokens"]["usage"]["completion_tokens"] == 12
    assert text("min_tokens", got).startswith(text("france", got))
    # a stop token ends the output there, its text kept (it is not a special token)
    stopped = got["stop_token"]
    assert stopped["choices"][0]["finish_reason"] == "stop" and text("stop_token", got).endswith(" Paris")
    assert stopped["usage"]["completion_tokens"] < got["france"]["usage"]["completion_tokens"]


def test_logprobs_bytes_are_the_tokens_own_bytes(client):
    body = {"model": "smol", "messages": [{"role": "user", "content": CHINESE}], "temperature": 0, "max_tokens": 10}
    answer = client.post("/v1/chat/completions", json=body | {"logprobs": True, "top_logprobs": 3}).json()
    choice = answer["choices"][0]
    entries = [e for e in choice["logprobs"]["content"] if e["token"] != "<|im_end|>"]

    def whole(raw: list[int]) -> bool:
        try:
            bytes(raw).decode()
        except UnicodeDecodeError:
            return False
        return True

    split = [e for e in entries if not whole(e["bytes"])]
    assert split, "expected a token that is part of a character"  # SmolLM2 splits most Chinese characters
    assert b"".join(bytes(e["bytes"]) for e in entries).decode() == choice["message"]["content"]
    for entry in [*entries, *(t for e in entries for t in e["top_logprobs"])]:
        assert "\ufffd" not in entry["token"]
        assert entry["bytes"] != list("\ufffd".encode())
    assert any(not whole(t["bytes"]) for e in entries for t in e["top_logprobs"])


def _stream(client: httpx.Client, body: dict) -> list[dict]:
    events = []
    with client.stream("POST", "/v1/completions", json=body | {"stream": True}) as response:
        assert response.status_code == 200
        for line in response.iter_raw():
            for part in line.split(b"\n"):
                event = sse_event(part.decode("utf-8"))  # strict: a broken character raises here
                if isinstance(event, dict):
                    events.append(event)
    return events


def test_chinese_streams_whole_characters(client):
    body = {"model": "smol", "prompt": CHINESE, "temperature": 0, "max_tokens": 16}
    whole = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    assert sum("\u4e00" <= c <= "\u9fff" for c in whole) >= 5 and "\ufffd" not in whole
    events = _stream(client, body | {"logprobs": 1})
    pieces = [e["choices"][0]["text"] for e in events]
    assert "".join(pieces) == whole and not any("\ufffd" in p for p in pieces)
    tokens = [t for e in events if e["choices"][0]["logprobs"] for t in e["choices"][0]["logprobs"]["tokens"]]
    assert len(tokens) == 16 and not any("\ufffd" in t for t in tokens)
    # a stop string of two characters, each split across tokens: the text stops right before it, whole
    stop = whole[4:6]
    events = _stream(client, body | {"stop": [stop]})
    text = "".join(e["choices"][0]["text"] for e in events)
    assert text == whole[: whole.index(stop)] and events[-1]["choices"][0]["finish_reason"] == "stop"


def test_tokenize_and_detokenize(smol_server, client):
    server, _ = smol_server
    tokens = client.post("/tokenize", json={"model": "smol", "prompt": CHINESE, "return_token_strs": True}).json()
    assert tokens["count"] == len(tokens["tokens"]) == len(tokens["token_strs"]) and tokens["max_model_len"] == 8192
    assert tokens["count"] > len(CHINESE)  # characters split across tokens
    assert client.post("/detokenize", json={"model": "smol", "tokens": tokens["tokens"]}).json() == {"prompt": CHINESE}
    # the chat form renders the template as chat completions do: the same prompt tokens
    messages = client.post("/tokenize", json={"model": "smol", "messages": FRANCE}).json()
    chat = client.post("/v1/chat/completions", json={"model": "smol", "messages": FRANCE, "max_tokens": 1}).json()
    assert messages["count"] == chat["usage"]["prompt_tokens"]
    bad = client.post("/detokenize", json={"model": "smol", "tokens": [10**9]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"
    # behind the same auth as every route, and in the OpenAPI document
    assert httpx.post(f"{server.url}/tokenize", json={"model": "smol", "prompt": "x"}).status_code == 401
    assert httpx.post(f"{server.url}/detokenize", json={"model": "smol", "tokens": [1]}).status_code == 401
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/tokenize", "/detokenize"} <= set(paths)
    assert json.dumps(paths["/tokenize"]).count("TokenizeRequest") >= 1


def test_generate_shows_whole_characters_and_half_ones_as_bytes(smollm2):
    """``leptonkit generate``: its text drops a character cut by max_tokens (no U+FFFD), and ``--explain`` shows a
    half character as its escaped bytes, through the same ``TokenPieces`` as the server's logprobs."""
    from transformers import AutoTokenizer

    from leptonkit.train.sampling import whole_characters
    from leptonkit.train.tokenizer import TokenPieces

    _, folder = smollm2
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(CHINESE)["input_ids"]
    pieces = [TokenPieces(tokenizer)(i) for i in ids]
    assert b"".join(raw for _, raw in pieces) == CHINESE.encode()
    assert not any("\ufffd" in text for text, _ in pieces) and any(text.startswith("\\x") for text, _ in pieces)
    assert whole_characters(tokenizer, ids) == CHINESE
    cut = len(ids) - 2
    shown = whole_characters(tokenizer, ids[:cut])  # ends inside 都 (two tokens before the end)
    assert shown == CHINESE[:-2]
    assert "\ufffd" in tokenizer.decode(ids[:cut]) and "\ufffd" not in shown
