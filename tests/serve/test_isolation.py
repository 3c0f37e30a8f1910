"""One request cannot end another's: hostile sampling settings and a sequence that fails inside the shared engine
step leave every other key's stream complete, on a real server with API keys (tiny Llama, real uvicorn)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import SSE_DONE, ServerThread, bearer, inference_keys, serve_thread, sse_event

LONG = {"model": "tiny", "prompt": "Hello world", "max_tokens": 60, "ignore_eos": True, "stream": True}
POISON = 400  # the token whose embedding the ``poisoned`` model has lost


@pytest.fixture(scope="module")
def keys(served_home: Path) -> dict[str, str]:
    return inference_keys(served_home, "isolation", ("alice", "bob", "mallory"))


@pytest.fixture(scope="module")
def broken_adapter(served_home: Path, tiny_adapters: list[Path], tmp_path_factory) -> str:
    """A LoRA adapter whose weights are finite but huge: its rows overflow to NaN logits and cannot be sampled,
    while the rows of other requests in the same step stay exact (their mask zeroes its columns)."""
    from safetensors.torch import load_file, save_file

    from leptonkit.registry import Registry

    folder = tmp_path_factory.mktemp("broken-lora")
    shutil.copytree(tiny_adapters[0], folder, dirs_exist_ok=True)
    weights = folder / "adapter_model.safetensors"
    save_file({name: t * 1e30 for name, t in load_file(weights).items()}, weights)
    Registry(served_home).register(str(folder), name="broken", base="tiny:1", task="generation")
    return "broken"


@pytest.fixture(scope="module")
def poisoned(served_home: Path, tiny_generator: Path, tmp_path_factory) -> str:
    """The tiny model with a NaN embedding for token POISON: a prompt holding it gets NaN logits in its own row
    (an embedding is a lookup, and attention stays within a row), which cannot be sampled."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from leptonkit.registry import Registry

    folder = tmp_path_factory.mktemp("poisoned")
    shutil.copytree(tiny_generator, folder, dirs_exist_ok=True)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    tensors["model.embed_tokens.weight"][POISON] = float("nan")
    save_file(tensors, weights, metadata={"format": "pt"})
    assert POISON not in AutoTokenizer.from_pretrained(folder)(LONG["prompt"])["input_ids"]
    Registry(served_home).register(str(folder), name="poisoned", task="generation")
    return "poisoned"


@pytest.fixture(scope="module")
def server(served_home: Path, keys, broken_adapter, poisoned) -> Iterator[ServerThread]:
    with serve_thread(
        models=["tiny", poisoned],
        adapters={broken_adapter: broken_adapter},
        home=str(served_home),
        dtype="float32",
        auth="on",
        max_num_seqs=8,
    ) as running:
        yield running


async def _stream(client: httpx.AsyncClient, key: str, body: dict, started: asyncio.Event | None = None) -> dict:
    """A streamed completion read to its end: its status, the text chunks, finish reasons, errors, and [DONE]."""
    seen: dict = {"status": None, "tokens": 0, "finish": [], "errors": [], "done": False}
    async with client.stream("POST", "/v1/completions", json=body, headers=bearer(key)) as response:
        seen["status"] = response.status_code
        if response.status_code != 200:
            body = await response.aread()
            is_json = response.headers.get("content-type", "").startswith("application/json")
            seen["errors"].append(json.loads(body)["error"] if is_json else body.decode(errors="replace"))
            return seen
        async for line in response.aiter_lines():
            event = sse_event(line)
            if event == SSE_DONE:
                seen["done"] = True
            elif isinstance(event, dict):
                if "error" in event:
                    seen["errors"].append(event["error"])
                    continue
                for choice in event["choices"]:
                    seen["tokens"] += 1
                    if choice["finish_reason"]:
                        seen["finish"].append(choice["finish_reason"])
                if started is not None:
                    started.set()
    return seen


async def _beside_others(
    server: ServerThread, keys: dict[str, str], hostile: dict, *, stream: bool, other: dict | None = None
) -> tuple:
    """Send ``hostile`` from mallory while alice and bob each have two streams running (``LONG``, sampled, with
    ``other``'s fields): (their results, its)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
        started = [asyncio.Event() for _ in range(4)]
        others = [
            asyncio.create_task(_stream(client, keys[who], LONG | {"temperature": 0.8} | (other or {}), started[i]))
            for i, who in enumerate(("alice", "alice", "bob", "bob"))
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 60)  # all four are decoding
        if stream:
            answer = await _stream(client, keys["mallory"], hostile | {"stream": True})
        else:
            response = await client.post("/v1/completions", json=hostile, headers=bearer(keys["mallory"]))
            answer = {"status": response.status_code, "body": response.json()}
        return await asyncio.gather(*others), answer


def _complete(result: dict) -> bool:
    return result["status"] == 200 and result["done"] and result["finish"] == ["length"] and not result["errors"]


HOSTILE = {
    "temperature 1e-45": {"temperature": 1e-45},
    "temperature 1e-300": {"temperature": 1e-300},
    "temperature 5e-3": {"temperature": 5e-3},
    "top_p 1e-300": {"top_p": 1e-300},
    "both": {"temperature": 1e-300, "top_p": 1e-300},
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("settings", HOSTILE.values(), ids=HOSTILE.keys())
def test_extreme_sampling_settings_are_served_and_harm_no_other_stream(server, keys, settings, stream):
    hostile = {"model": "tiny", "prompt": "To be, or not to be", "max_tokens": 8, "ignore_eos": True} | settings
    others, answer = asyncio.run(_beside_others(server, keys, hostile, stream=stream))
    assert all(_complete(r) for r in others), others
    assert answer["status"] == 200, answer
    if stream:
        assert answer["done"] and answer["finish"] == ["length"] and not answer["errors"]
    else:
        assert answer["body"]["usage"]["completion_tokens"] == 8


def test_tiny_temperature_is_greedy_and_tiny_top_p_keeps_the_likeliest_token(server, keys):
    body = {"model": "tiny", "prompt": "All the world's", "max_tokens": 12, "ignore_eos": True}
    with httpx.Client(base_url=server.url, headers=bearer(keys["alice"]), timeout=60) as client:
        texts = {
            name: client.post("/v1/completions", json=body | settings).json()["choices"][0]["text"]
            for name, settings in {
                "greedy": {"temperature": 0},
                "1e-45": {"temperature": 1e-45},
                "top_p": {"temperature": 1.0, "top_p": 1e-300, "seed": 3},
            }.items()
        }
    assert texts["1e-45"] == texts["greedy"] == texts["top_p"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_sequence_that_fails_in_the_shared_step_ends_alone_with_a_400(server, keys, broken_adapter, stream):
    hostile = {"model": broken_adapter, "prompt": "To be", "max_tokens": 8, "temperature": 1.0, "n": 2}
    others, answer = asyncio.run(_beside_others(server, keys, hostile, stream=stream))
    assert all(_complete(r) for r in others), others
    assert answer["status"] == 400, answer
    error = answer["errors"][0] if stream else answer["body"]["error"]
    assert error["type"] == "invalid_request_error"
    assert "generation failed at token 0" in error["message"]
    ok = httpx.post(
        f"{server.url}/v1/completions", json=LONG | {"stream": False}, headers=bearer(keys["mallory"]), timeout=60
    )
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 60  # the engine serves on


def test_a_choice_that_fails_mid_stream_ends_the_stream_with_an_error_event_and_done(server, keys, poisoned):
    # sampled (greedy takes the argmax of NaN logits without failing), seeded: an unseeded first token can be part of
    # a multi-byte character, which opens the stream with no text
    hostile = {"model": poisoned, "prompt": [[5, 6, 7], [POISON, 6, 7]], "max_tokens": 8, "ignore_eos": True, "seed": 0}
    greedy = {"model": poisoned, "temperature": 0}  # a sampled stream could draw POISON itself
    others, answer = asyncio.run(_beside_others(server, keys, hostile, stream=True, other=greedy))
    assert all(_complete(r) for r in others), others
    assert answer["status"] == 200 and answer["tokens"] >= 1  # the first choice's token opened the stream
    (error,) = answer["errors"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert "generation failed at token 0" in error["message"]
    assert answer["done"]


def test_when_one_choice_fails_the_others_of_its_request_are_aborted(server, keys, poisoned):
    from leptonkit.monitor import metrics

    engine = server.app.state.models.generators[poisoned]
    generated = metrics.GENERATION_TOKENS.labels(model=poisoned)
    before = generated._value.get()
    # seed 0: the healthy choice's 120 sampled tokens do not draw POISON, so it would run all 120
    body = {"model": poisoned, "prompt": [[5, 6, 7], [POISON, 6, 7]], "max_tokens": 120, "seed": 0, "ignore_eos": True}
    response = httpx.post(f"{server.url}/v1/completions", json=body, headers=bearer(keys["mallory"]), timeout=60)
    assert response.status_code == 400
    deadline = time.monotonic() + 30
    while engine.stats()["running"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert generated._value.get() - before < 60  # the healthy choice stopped when its sibling failed, not at 120


@pytest.mark.parametrize("seed", [2**64, 2**64 + 1, -(2**63) - 1, 10**40])
def test_seed_outside_int64_is_a_400_naming_seed(server, keys, seed):
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 2, "seed": seed}
    response = httpx.post(f"{server.url}/v1/completions", json=body, headers=bearer(keys["bob"]), timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "seed"


@pytest.mark.parametrize("seed", [2**63 - 1, -(2**63), 0])
def test_seeds_at_the_ends_of_int64_reproduce_with_n_choices(server, keys, seed):
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 6, "seed": seed, "n": 16, "ignore_eos": True}
    with httpx.Client(base_url=server.url, headers=bearer(keys["bob"]), timeout=60) as client:
        first, again = (client.post("/v1/completions", json=body) for _ in range(2))
    assert first.status_code == again.status_code == 200, first.text
    texts = [c["text"] for c in first.json()["choices"]]
    assert texts == [c["text"] for c in again.json()["choices"]]
    assert len(set(texts)) > 1  # seed + choice index: the choices differ
