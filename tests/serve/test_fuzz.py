"""A bounded fuzz pass (hypothesis) over the bodies of /v1/chat/completions and /v1/completions on a real server
(auth on, ``--max-tokens-cap 16``, ``--max-streams-per-key 2``), checking the invariants of issue 17 on every
example: no 5xx; no response longer than the cap; no key streams more than its limit at once; and another key's
streams, running all along, all complete."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serve.conftest import SSE_DONE, ServerThread, bearer, inference_keys, serve_thread, sse_event

CAP = 16
STREAMS_PER_KEY = 2
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
STREAM = st.sampled_from([True, False, "true", 1, 0, "yes", None])


def _fields(valid: bool) -> dict:
    """The sampling fields shared by both routes: within the models' ranges but at their edges (``valid``), or
    anything, including the values that walked around limits before (floats, numeric strings, huge numbers)."""
    if valid:
        return {
            "max_tokens": st.one_of(st.integers(1, CAP), st.sampled_from([CAP + 1, 200.0, "200"])),
            "temperature": st.one_of(st.floats(0, 2), st.sampled_from([1e-45, 1e-300, 5e-324, 1e-5, 9e-3])),
            "top_p": st.one_of(st.floats(1e-300, 1), st.sampled_from([1e-300, 5e-324, 1.0])),
            "n": st.integers(1, 3),
            "seed": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
            "stop": st.one_of(st.none(), TEXT, st.lists(TEXT, max_size=4)),
            "stream_options": st.just({"include_usage": True}),
            "ignore_eos": st.booleans(),
        }
    finite = st.floats(allow_nan=False, allow_infinity=False)  # JSON has no NaN or infinity: httpx cannot send them
    number = st.one_of(st.integers(-(2**70), 2**70), finite, st.sampled_from([0, 1e-300, 10**6]))
    counts = st.one_of(st.integers(-2, 300), st.sampled_from([200.0, "200", "16", 16.0, 10**9, None, True]))
    return {
        "max_tokens": counts,
        "max_completion_tokens": counts,
        "temperature": number,
        "top_p": number,
        "n": st.one_of(st.integers(-1, 20), st.sampled_from(["2", 2.0])),
        "seed": st.one_of(st.none(), st.integers(-(2**65), 2**65), st.sampled_from([2**64, -(2**63) - 1])),
        "stop": st.one_of(st.none(), TEXT, st.lists(TEXT, max_size=18)),
        "stream": STREAM,
        "stream_options": st.sampled_from([None, {"include_usage": True}, {"include_usage": "yes"}]),
        "ignore_eos": st.booleans(),
    }


def _requests(valid: bool) -> st.SearchStrategy[tuple[str, dict]]:
    roles = ["system", "user", "assistant"] if valid else ["system", "user", "assistant", "robot"]
    content = TEXT.filter(str.strip) if valid else st.one_of(TEXT, st.none())
    messages = st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(roles), "content": content}), min_size=int(valid), max_size=3
    )
    prompts = (
        st.one_of(TEXT.filter(str.strip), st.lists(st.integers(1, 500), min_size=1, max_size=8))
        if valid
        else st.one_of(TEXT, st.lists(TEXT, max_size=3), st.lists(st.integers(-1, 600), max_size=8))
    )
    streams = {"stream": st.sampled_from([True, "true", 1, False])} if valid else {}
    chat = st.fixed_dictionaries(
        {"model": st.just("tiny"), "messages": messages} | streams,
        optional=_fields(valid) | {"logprobs": st.booleans(), "top_logprobs": st.integers(0 if valid else -1, 25)},
    )
    completion = st.fixed_dictionaries(
        {"model": st.just("tiny") if valid else st.sampled_from(["tiny", "nope"]), "prompt": prompts} | streams,
        optional=_fields(valid) | {"logprobs": st.one_of(st.none(), st.integers(0 if valid else -1, 5))},
    )
    return st.one_of(
        st.tuples(st.just("/v1/chat/completions"), chat), st.tuples(st.just("/v1/completions"), completion)
    )


REQUESTS = st.one_of(_requests(valid=True), _requests(valid=False))


@pytest.fixture(scope="module")
def keys(served_home: Path) -> dict[str, str]:
    return inference_keys(served_home, "fuzz", ("fuzzer", "bystander"))


@pytest.fixture(scope="module")
def limited(served_home: Path, keys) -> Iterator[ServerThread]:
    with serve_thread(
        models=["tiny"],
        home=str(served_home),
        dtype="float32",
        auth="on",
        max_num_seqs=8,
        max_tokens_cap=CAP,
        max_streams_per_key=STREAMS_PER_KEY,
    ) as running:
        yield running


def _read(response: httpx.Response) -> dict:
    """Status; whether it streamed; tokens per choice (usage over choices, or text chunks per choice: a lower bound
    where a stream has no usage); [DONE]; error events."""
    streamed = response.headers.get("content-type", "").startswith("text/event-stream")
    out = {"status": response.status_code, "streamed": streamed, "tokens": [], "done": False, "errors": []}
    if not streamed:
        content = response.read()
        if response.status_code == 200:
            body = json.loads(content)
            out["tokens"] = [body["usage"]["completion_tokens"] / len(body["choices"])]
        return out
    chunks: dict[int, int] = {}
    usage = None
    for event in map(sse_event, response.iter_lines()):
        if event == SSE_DONE:
            out["done"] = True
        elif isinstance(event, dict):
            if "error" in event:
                out["errors"].append(event["error"])
            if event.get("usage"):
                usage = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                text = choice.get("text") or (choice.get("delta") or {}).get("content")
                chunks[choice["index"]] = chunks.get(choice["index"], 0) + bool(text)
    out["tokens"] = list(chunks.values()) + ([usage / len(chunks)] if usage is not None and chunks else [])
    return out


def _post(url: str, path: str, body: dict, key: str) -> dict:
    with httpx.stream("POST", url + path, json=body, headers=bearer(key), timeout=120) as response:
        return _read(response)


BYSTANDER = {
    "model": "tiny",
    "prompt": "Hello",
    "max_tokens": CAP,
    "ignore_eos": True,
    "stream": True,
    "temperature": 0.9,
}


class Bystander:
    """Another key streaming one request after another for as long as the fuzz runs."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.results: list[dict] = []
        self.failure: BaseException | None = None  # a stream it could not read ends its thread: the test fails
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                self.results.append(_post(self.url, "/v1/completions", BYSTANDER, self.key))
        except BaseException as err:
            self.failure = err

    def __enter__(self) -> Bystander:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


def _streams_beyond_the_limit(server: ServerThread, path: str, body: dict, key: str) -> bool:
    """Send ``body`` STREAMS_PER_KEY + 1 times at once while the engine is held, so that no stream can get its first
    token: one copy must be refused (429) meanwhile, and no more than STREAMS_PER_KEY may stream in the end."""
    engine = server.app.state.models.generators["tiny"]
    with ThreadPoolExecutor(STREAMS_PER_KEY + 1) as pool:
        with engine._model_lock:
            futures = [pool.submit(_post, server.url, path, body, key) for _ in range(STREAMS_PER_KEY + 1)]
            finished, _ = wait(futures, timeout=10, return_when=FIRST_COMPLETED)
            refused = any(f.result()["status"] == 429 for f in finished)
        streamed = sum(r["streamed"] and r["status"] == 200 for r in (f.result() for f in futures))
    return not refused or streamed > STREAMS_PER_KEY


def test_fuzzed_requests_keep_every_invariant(limited, keys):
    violations: list[tuple] = []
    outcomes: list[tuple[int, bool]] = []

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(request=REQUESTS)
    def fuzz(request) -> None:
        path, body = request
        result = _post(limited.url, path, body, keys["fuzzer"])
        outcomes.append((result["status"], result["streamed"]))
        if result["status"] >= 500:
            violations.append(("5xx", path, body, result))
        if any(tokens > CAP for tokens in result["tokens"]):
            violations.append(("over the cap", path, body, result))
        if result["streamed"] and result["status"] == 200:
            if not result["done"]:
                violations.append(("stream without [DONE]", path, body, result))
            if _streams_beyond_the_limit(limited, path, body, keys["fuzzer"]):
                violations.append(("streams beyond the per-key limit", path, body, result))

    with Bystander(limited.url, keys["bystander"]) as bystander:
        fuzz()
    harmed = [r for r in bystander.results if not (r["status"] == 200 and r["done"] and not r["errors"])]
    assert violations == []
    assert {200, 400} <= {status for status, _ in outcomes}
    assert (200, True) in outcomes  # some streams were checked against the per-key limit
    assert bystander.failure is None, repr(bystander.failure)
    assert len(bystander.results) >= 3 and harmed == [], harmed
