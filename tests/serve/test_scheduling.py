"""Limits that match the work, on a real server: the queue counts sequences (prompts x n), a request is refused
whole before any of it is queued, and one API key's flood leaves rows for another key's short request
(``engine.scheduler``: per-key shares, round-robin admission)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import ServerThread, bearer, inference_keys, serve_thread

SHORT = {"model": "tiny", "prompt": "Hello", "max_tokens": 4, "ignore_eos": True}  # sampled: EOS could end it early


async def _until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


@pytest.fixture(scope="module")
def keys(served_home: Path) -> dict[str, str]:
    return inference_keys(served_home, "scheduling", ("alice", "bob"))


@pytest.fixture(scope="module")
def keyed(served_home: Path, keys) -> Iterator[ServerThread]:
    """Auth on, 8 rows, 64 queue places: a key may hold 7 rows and 56 places (all but an eighth)."""
    with serve_thread(
        models=["tiny"], home=str(served_home), dtype="float32", auth="on", max_num_seqs=8, max_queue=64
    ) as running:
        yield running


def test_another_keys_short_request_is_served_while_a_flood_waits(keyed, keys):
    engine = keyed.app.state.models.generators["tiny"]
    prompts = ["Hello world", "To be, or not to be", "All the world's a stage", "The quick brown fox"]
    flood = {"model": "tiny", "prompt": prompts, "n": 14, "max_tokens": 100, "ignore_eos": True}  # 56 sequences

    async def scenario() -> dict:
        async with httpx.AsyncClient(base_url=keyed.url, timeout=120) as client:
            flood_started = time.perf_counter()
            flooding = asyncio.create_task(client.post("/v1/completions", json=flood, headers=bearer(keys["alice"])))
            await _until(lambda: engine.stats()["running"] >= 7)
            # at once, while alice's first rows are still far from their 100th token: with no step running, none
            # of them finishes while her queue is read. Were one to finish first, her request of 8 would fit and
            # wait for a step that this lock holds back, so the state is checked before it is sent.
            with engine._model_lock:
                assert engine.stats()["waiting"] == 49, f"alice's rows moved on before the lock: {engine.stats()}"
                more = await client.post("/v1/completions", json=SHORT | {"n": 8}, headers=bearer(keys["alice"]))
            running_alone = 0
            for _ in range(10):  # a few more steps: the eighth row stays free
                running_alone = max(running_alone, engine.stats()["running"])
                await asyncio.sleep(0.005)
            started = time.perf_counter()
            short = await client.post("/v1/completions", json=SHORT, headers=bearer(keys["bob"]))
            seen = {
                "short_seconds": time.perf_counter() - started,
                "flood_done": flooding.done(),
                "waiting": engine.stats()["waiting"],
                "running_alone": running_alone,
            }
            seen |= {"more": more, "short": short, "flood": await flooding}
            seen["flood_seconds"] = time.perf_counter() - flood_started
            return seen

    seen = asyncio.run(scenario())
    assert seen["running_alone"] == 7  # alice alone holds all rows but an eighth
    assert seen["more"].status_code == 429  # 49 of alice's wait: 8 more pass her 56 places
    assert seen["more"].headers["retry-after"] == "1"
    assert seen["short"].status_code == 200 and seen["short"].json()["usage"]["completion_tokens"] == 4
    assert not seen["flood_done"] and seen["waiting"] > 0  # bob did not wait behind alice's queue
    assert seen["flood"].status_code == 200
    assert [c["finish_reason"] for c in seen["flood"].json()["choices"]] == ["length"] * 56
    assert seen["short_seconds"] < seen["flood_seconds"] / 3


def test_a_request_larger_than_a_keys_share_of_the_queue_is_a_400(keyed, keys):
    body = SHORT | {"prompt": ["a", "b", "c", "d"], "n": 15}  # 60 sequences: more than 56 per key
    response = httpx.post(f"{keyed.url}/v1/completions", json=body, headers=bearer(keys["bob"]), timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "n" and "60 sequences" in error["message"] and "per API key" in error["message"]
    fits = httpx.post(f"{keyed.url}/v1/completions", json=body | {"n": 14}, headers=bearer(keys["bob"]), timeout=120)
    assert fits.status_code == 200 and len(fits.json()["choices"]) == 56


@pytest.fixture(scope="module")
def anonymous(served_home: Path) -> Iterator[ServerThread]:
    """No auth: one owner, plain FIFO, 16 queue places counted in sequences."""
    with serve_thread(models=["tiny"], home=str(served_home), dtype="float32", max_num_seqs=2, max_queue=16) as s:
        yield s


def test_the_queue_counts_sequences_and_refuses_a_request_whole(anonymous):
    engine = anonymous.app.state.models.generators["tiny"]

    async def scenario() -> dict:
        async with httpx.AsyncClient(base_url=anonymous.url, timeout=120) as client:
            with engine._model_lock:  # the engine admits a row or two of the first request, then waits for the lock
                first = asyncio.create_task(client.post("/v1/completions", json=SHORT | {"n": 10}))
                await _until(lambda: engine.stats()["waiting"] >= 8)
                await asyncio.sleep(0.2)
                before = engine.stats()["waiting"]
                refused = await client.post("/v1/completions", json=SHORT | {"prompt": ["a", "b"], "n": 5})
                after = engine.stats()["waiting"]
            return {"refused": refused, "before": before, "after": after, "first": await first}

    seen = asyncio.run(scenario())
    assert seen["refused"].status_code == 429, seen["refused"].text  # 8 or 9 waiting + 10 > 16
    assert seen["after"] == seen["before"]  # none of the refused request's sequences was queued
    assert seen["first"].status_code == 200
    never = httpx.post(f"{anonymous.url}/v1/completions", json=SHORT | {"prompt": ["a", "b"], "n": 9}, timeout=60)
    assert never.status_code == 400 and "18 sequences" in never.json()["error"]["message"]
    whole = httpx.post(f"{anonymous.url}/v1/completions", json=SHORT | {"prompt": ["a", "b"], "n": 8}, timeout=120)
    assert whole.status_code == 200 and len(whole.json()["choices"]) == 16
