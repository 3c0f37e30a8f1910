"""Backpressure and lifecycle: a full queue answers 429, a late request 504, a gone client frees its slot,
and SIGTERM drains in-flight requests before the process exits 0."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.security.server import free_port
from tests.serve.conftest import ServerThread, serve_thread

BODY = {"model": "tiny", "prompt": "Hello", "max_tokens": 4}


def _wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def small_server(served_home) -> Iterator[ServerThread]:
    with serve_thread(models=["tiny"], home=str(served_home), max_num_seqs=1, max_queue=1, request_timeout=1.0) as s:
        yield s


def test_full_queue_answers_429_and_late_request_504(small_server):
    engine = small_server.app.state.models.generators["tiny"]
    results: dict[str, httpx.Response] = {}

    def post(key: str) -> None:
        results[key] = httpx.post(f"{small_server.url}/v1/completions", json=BODY, timeout=30)

    with engine._model_lock:  # the engine is busy: the first request is admitted, the second waits
        first = threading.Thread(target=post, args=("first",))
        first.start()
        time.sleep(0.3)
        assert engine.stats()["waiting"] == 0  # admitted, blocked on the model
        second = threading.Thread(target=post, args=("second",))
        second.start()
        _wait(lambda: engine.stats()["waiting"] == 1)
        rejected = httpx.post(f"{small_server.url}/v1/completions", json=BODY, timeout=30)
        assert rejected.status_code == 429
        assert rejected.headers["retry-after"] == "1"
        assert rejected.json()["error"]["type"] == "rate_limit_error"
        first.join()
        second.join()
    assert results["first"].status_code == 504  # held past the 1 s request timeout
    assert "timeout of 1 s" in results["first"].json()["error"]["message"]
    assert results["second"].status_code == 504
    ok = httpx.post(f"{small_server.url}/v1/completions", json=BODY, timeout=30)
    assert ok.status_code == 200  # the engine dropped the abandoned requests and serves again


def _hold_after_first_step(engine, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Hold ``engine`` after the step that made a request's first token, whatever its speed: (``frozen``, set once
    held; ``release``, to set to go on)."""
    frozen, release = threading.Event(), threading.Event()
    step = engine._iterate

    def step_then_hold(admitted):
        step(admitted)
        if engine._seqs and not frozen.is_set():
            frozen.set()
            release.wait(10)

    monkeypatch.setattr(engine, "_iterate", step_then_hold)
    return frozen, release


def test_client_disconnect_frees_the_slot(small_server, monkeypatch):
    engine = small_server.app.state.models.generators["tiny"]
    body = BODY | {"max_tokens": 120, "stream": True, "ignore_eos": True}
    frozen, release = _hold_after_first_step(engine, monkeypatch)
    with httpx.Client(base_url=small_server.url, timeout=30) as client:
        with client.stream("POST", "/v1/completions", json=body) as response:
            assert response.status_code == 200
            assert frozen.wait(10)
            (seq,) = engine._seqs
            assert next(line for line in response.iter_lines() if line).startswith("data:")
        time.sleep(0.3)  # the stream is closed: the server notices while the engine is frozen
        release.set()
    _wait(lambda: engine._seqs == [], timeout=5)
    assert seq.aborted and seq.generated < 120
    assert engine.stats() == {"running": 0, "waiting": 0}


LONG = {  # non-streaming requests of 100 tokens (the chat template's prompt and 100 fit the context of 128); greedy
    # where EOS is not ignored, so that the outcome does not depend on a draw
    "/v1/completions": BODY | {"max_tokens": 100, "ignore_eos": True},
    "/v1/responses": {"model": "tiny", "input": "Hello", "max_output_tokens": 100, "temperature": 0},
}


@pytest.mark.parametrize("endpoint", LONG)
def test_a_client_that_leaves_a_non_streaming_request_aborts_its_generation(served_home, monkeypatch, endpoint):
    with serve_thread(models=["tiny"], home=str(served_home), max_num_seqs=1) as server:  # 600 s request timeout
        engine = server.app.state.models.generators["tiny"]
        frozen, release = _hold_after_first_step(engine, monkeypatch)
        payload = json.dumps(LONG[endpoint]).encode()
        closed_before = _closed(server.url, endpoint)
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as client:  # a raw socket: closed while the answer is owed
            head = f"POST {endpoint} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            client.sendall(f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
            assert frozen.wait(10)
            (seq,) = engine._seqs
        time.sleep(0.3)  # the connection is closed: the server notices while the engine is frozen
        release.set()
        _wait(lambda: engine._seqs == [], timeout=5)
        assert seq.aborted and seq.generated < 100  # not generated to its end for nobody
        assert _closed(server.url, endpoint) == closed_before + 1  # counted (and logged) as 499
        ok = httpx.post(f"{server.url}/v1/completions", json=BODY | {"ignore_eos": True}, timeout=30)
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4


def _closed(url: str, endpoint: str) -> float:
    """``endpoint``'s requests counted with status 499 (client closed) by the server's process."""
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(rf'leptonkit_requests_total\{{[^}}]*endpoint="{endpoint}"[^}}]*status="499"\}} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_then_exits_0(served_home, tmp_path):
    port = free_port()
    env = os.environ | {"LEPTONKIT_HOME": str(served_home)}
    command = [sys.executable, "-m", "leptonkit.cli.main", "serve", "tiny", "--port", str(port), "--grace-period", "20"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _ready(url), timeout=90)
        body = {"model": "tiny", "prompt": "Hello", "max_tokens": 100, "n": 16, "stream": True, "ignore_eos": True}
        finishes: list[str] = []
        with httpx.Client(base_url=url, timeout=60) as client, client.stream("POST", "/v1/completions", json=body) as r:
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data:"))
            proc.send_signal(signal.SIGTERM)
            for line in lines:
                if line.startswith("data: {"):
                    choice = json.loads(line[6:])["choices"][0]
                    if choice["finish_reason"]:
                        finishes.append(choice["finish_reason"])
        assert finishes == ["length"] * 16  # every choice of the in-flight request finished
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
