"""One JSON log line per request, request ids, no content by default, and PII-redacted content on request."""

from __future__ import annotations

import json

import httpx

from tests.security.server import OPS_APP, run_server

EMAILS = ["jane.doe@example.com", "k.tanaka+bank@mail.example.org"]
CARDS = ["4111 1111 1111 1111", "5500-0000-0000-0004"]
NAMES = ["Margarethe Vandersloot", "Oluwaseun Adebayo"]
# Chinese: a mobile number with +86 and dashes, a resident ID number with its check digit, a name before 先生
CHINESE = ["+86 138-1234-5678", "11010519491231002X", "王小明"]
SECRET_TEXT = (
    f"I am {NAMES[0]}, mail {EMAILS[0]} or {EMAILS[1]}; card {CARDS[0]}, backup {CARDS[1]}; ask {NAMES[1]}. "
    f"请联系{CHINESE[2]}先生，手机{CHINESE[0]}，身份证号{CHINESE[1]}。"
)


def _server(tmp_path_factory, **settings):
    env = {"LEPTONKIT_HOME": str(tmp_path_factory.mktemp("home")), "LEPTONKIT_TEST_OPS": json.dumps(settings)}
    return run_server(OPS_APP, tmp_path_factory.mktemp("log") / "server.log", env=env)


def _traffic(url: str) -> None:
    """Personal data through every path a request can take: success, stream, validation error, 404, 413."""
    headers = {"X-Request-ID": "leak-check"}
    assert httpx.post(url + "/v1/echo", json={"model": "echo", "prompt": SECRET_TEXT}, headers=headers).is_success
    with httpx.stream("POST", url + "/v1/echo", json={"prompt": SECRET_TEXT, "stream": True}) as response:
        response.read()
    assert httpx.post(url + "/v1/echo", json={"prompt": SECRET_TEXT, "max_tokens": EMAILS[0]}).status_code == 422
    assert httpx.post(url + "/v1/nowhere", json={"prompt": SECRET_TEXT}).status_code == 404
    assert httpx.post(url + "/v1/echo", content=SECRET_TEXT.encode() * 40000).status_code == 413


def test_no_raw_personal_data_in_any_log_line_by_default(tmp_path_factory):
    with _server(tmp_path_factory) as server:
        _traffic(server.url)
    # read after the server stopped: a line is written just after its response, so a live read can miss the last
    text = server.log_text()
    lines = server.log_lines()
    for value in EMAILS + CARDS + NAMES + CHINESE + [SECRET_TEXT[:20]]:
        assert value not in text
    assert {line["status"] for line in lines if line.get("request_id") == "leak-check"} == {200}
    assert {200, 422, 404, 413} <= {line.get("status") for line in lines}
    assert not any("prompt" in line or "output" in line for line in lines)


def test_log_line_fields_and_request_ids(tmp_path_factory):
    with _server(tmp_path_factory) as server:
        given = httpx.post(server.url + "/v1/echo", json={"prompt": "a b c"}, headers={"X-Request-ID": "req-42"})
        fresh = httpx.post(server.url + "/v1/echo", json={"prompt": "a"}, headers={"X-Request-ID": "bad id;<script>"})
        lines = server.log_lines()
    assert given.headers["x-request-id"] == "req-42"
    assert fresh.headers["x-request-id"] != "bad id" and len(fresh.headers["x-request-id"]) == 32
    line = next(line for line in lines if line.get("request_id") == "req-42")
    assert line["route"] == "/v1/echo" and line["method"] == "POST" and line["status"] == 200
    assert line["model"] == "echo" and line["prompt_tokens"] == 3 and line["completion_tokens"] == 3
    assert line["level"] == "INFO" and line["latency_ms"] > 0 and line["ts"]


def test_log_content_is_pii_redacted(tmp_path_factory):
    with _server(tmp_path_factory, log_content=True) as server:
        _traffic(server.url)
    text = server.log_text()
    line = next(line for line in server.log_lines() if line.get("request_id") == "leak-check")
    assert "[EMAIL]" in line["prompt"] and "[CREDIT_CARD]" in line["output"] + line["prompt"]
    for value in EMAILS + CARDS + CHINESE:
        assert value not in text
    assert "[PHONE]" in line["prompt"] and "[CN_ID_CARD]" in line["prompt"]
    # Names are found with no setup (word lists and cues: "I am ...", "ask ..."), no NER model aliased @pii needed
    assert not any(value in text for value in NAMES)
