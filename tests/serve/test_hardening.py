"""Findings of an attacker's pass over the real server, each a test that failed before the fix: unauthenticated
floods that filled the audit log, probes refused by the per-client limit or with HEAD, slow-header connections held
open, a stream that broke after its first byte logged as a 200, and 404s naming the server's folders."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator

import httpx

from leptonkit.monitor.logging import ACCESS_LOGGER, JsonFormatter
from tests.serve.conftest import serve_thread


@contextlib.contextmanager
def _serving(served_home, **config) -> Iterator[httpx.Client]:
    """A client of a real server of the tiny generator."""
    config = {"models": ["tiny"], "home": str(served_home), "dtype": "float32"} | config
    with serve_thread(**config) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@contextlib.contextmanager
def _access_lines() -> Iterator[list[dict]]:
    """The access log lines written while the block runs."""
    lines: list[dict] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(JsonFormatter().format(record)))

    handler = Collect()
    logging.getLogger(ACCESS_LOGGER).addHandler(handler)
    try:
        yield lines
    finally:
        logging.getLogger(ACCESS_LOGGER).removeHandler(handler)


def test_unauthenticated_flood_writes_bounded_audit_lines(served_home, tmp_path):
    audit = tmp_path / "audit.log"
    long_path = "/v1/" + "a" * 60_000
    with _serving(served_home, auth="on", audit_log=str(audit)) as client:
        statuses = {client.get(long_path).status_code for _ in range(300)}
    assert statuses == {401}
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert 1 <= len(lines) <= 100 and audit.stat().st_size < 150_000  # 300 full paths were 18 MB
    assert all(len(line["path"]) < 300 and "60004 characters" in line["path"] for line in lines)


def test_probes_answer_head_and_never_count_against_the_client_limit(served_home):
    with _serving(served_home, rate_limit_rpm=2) as client:
        probes = [
            client.request(method, path)
            for _ in range(5)
            for method in ("GET", "HEAD")
            for path in ("/health", "/ready")
        ]
        assert {r.status_code for r in probes} == {200}
        assert [client.get("/v1/models").status_code for _ in range(3)] == [200, 200, 429]
        assert client.head("/health").status_code == 200  # probes still answer while the client is limited


def _health(sock: socket.socket) -> bytes:
    """Send ``GET /health`` on ``sock`` and read its whole answer (headers and body may come apart)."""
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while b'"ok"}' not in answer:
        answer += sock.recv(4096)
    return answer


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` while the client trickles a byte every 0.2 s."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            pass
        try:
            sock.send(b"X")
        except OSError:
            return True
    return False


def test_slow_headers_and_idle_connections_are_closed(served_home):
    with serve_thread(models=["tiny"], home=str(served_home), header_timeout=1, keep_alive_timeout=1) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            assert _closed_within(slow, 6)
        with socket.create_connection(("127.0.0.1", port)) as kept:
            assert b"200 OK" in _health(kept)
            kept.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")  # the next request's headers, one byte at a time
            assert _closed_within(kept, 6)
        with socket.create_connection(("127.0.0.1", port)) as idle:
            assert b"200 OK" in _health(idle)
            idle.settimeout(6)
            assert idle.recv(4096) == b""  # closed after the 1 s keep-alive
        assert httpx.get(server.url + "/health").status_code == 200


def test_a_stream_that_fails_after_its_first_byte_is_logged_with_the_error_status(served_home):
    # one sequence at a time and 64 of them: the first token comes at once, the last long after the 2 s timeout
    body = {"model": "tiny", "prompt": ["Hello", "world", "fox", "dog"], "n": 16, "max_tokens": 100}
    body |= {"ignore_eos": True, "stream": True}
    with (
        _access_lines() as lines,
        serve_thread(
            models=["tiny"], home=str(served_home), dtype="float32", max_num_seqs=1, max_queue=256, request_timeout=2
        ) as server,
    ):
        headers = {"X-Request-ID": "broken-stream"}
        with httpx.stream("POST", server.url + "/v1/completions", json=body, headers=headers, timeout=60) as r:
            assert r.status_code == 200
            events = [line for line in r.iter_lines() if line.startswith("data: {")]
        metrics = httpx.get(server.url + "/metrics").text
    error = json.loads(events[-1][6:])["error"]
    assert error["code"] == 504 and len(events) > 1
    line = next(line for line in lines if line.get("request_id") == "broken-stream")
    assert line["status"] == 504
    assert 'endpoint="/v1/completions"' in metrics and 'status="504"' in metrics


def test_not_found_messages_name_no_folder(served_home):
    with _serving(served_home) as client:
        answers = [
            client.post("/v1/adapters", json={"ref": "nope:3"}),
            client.post("/v1/adapters", json={"ref": "nope"}),
            client.post("/v1/completions", json={"model": "nope", "prompt": "hi"}),
            client.post("/v1/completions", json={"model": "tiny:nope", "prompt": "hi"}),
            client.get("/v1/nothing"),
        ]
    for answer in answers:
        assert answer.status_code == 404, answer.text
        assert str(served_home) not in answer.text and "/tmp" not in answer.text, answer.text


def test_log_content_logs_the_validated_prompt_redacted(served_home):
    """The middleware no longer reads bodies: the routes note the prompt they validated (behind a BOM too)."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": "mail jane.doe@example.com now"}]}
    raw = b"\xef\xbb\xbf" + json.dumps(body | {"max_tokens": 2, "ignore_eos": True}).encode()  # sampled: 2 tokens
    with _access_lines() as lines, _serving(served_home, log_content=True) as client:
        headers = {"content-type": "application/json", "X-Request-ID": "logged-content"}
        assert client.post("/v1/chat/completions", content=raw, headers=headers).status_code == 200
    line = next(line for line in lines if line.get("request_id") == "logged-content")
    assert line["prompt"] == "mail [EMAIL] now" and line["model"] == "tiny" and line["completion_tokens"] == 2
    # No model is aliased @pii here: the operator is told names rest on word lists and cues alone.
    warning = next(line for line in lines if line.get("event") == "log_content")
    assert "no NER model aliased @pii" in warning["message"]
