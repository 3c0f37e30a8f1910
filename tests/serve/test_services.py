"""Custom Python services (``leptonkit serve --service FILE.py:CLASS``): batching, streaming, schemas, auth, rate
limits, failures, and the one-line refusals of a bad service before the server starts."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from leptonkit.client import ApiError, Client
from leptonkit.errors import InvalidInputError
from leptonkit.monitor.logging import ACCESS_LOGGER
from tests.serve.conftest import bearer, inference_keys, serve_thread, sse_event

SERVICES = Path(__file__).parent / "services"
TOOLKIT = f"{SERVICES / 'toolkit.py'}:Toolkit"
BROKEN = """import a_module_that_does_not_exist

import leptonkit as lk


class Broken(lk.Service):
    @lk.endpoint()
    def run(self, text: str) -> str:
        return text
"""
RPM = 80  # per key: the 64 concurrent calls fit, the rate-limit test's burst does not


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("services-home")
    return {"home": str(home)} | inference_keys(home, "svc", ["batch", "stream", "limit", "misc"])


@pytest.fixture(scope="module")
def server(keys):
    with serve_thread(services=[TOOLKIT], home=keys["home"], auth="on", rate_limit_rpm=RPM) as running:
        yield running


def test_64_concurrent_calls_share_handler_invocations_and_each_gets_its_own_result(server, keys):
    client = Client(server.url, api_key=keys["batch"])

    def one(i: int) -> float:
        return client.call("score", query=str(i), passage="p" * (i % 7))

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(64)))
    assert results == [i + (i % 7) / 10 for i in range(64)]
    sizes = client.call("toolkit.calls")
    assert sum(sizes) == 64 and len(sizes) < 64 and max(sizes) <= 16, sizes


def test_streaming_endpoint_sends_each_item_as_an_event(server, keys):
    client = Client(server.url, api_key=keys["stream"])
    assert list(client.call("spell", text="abc", times=2)) == list("abcabc")
    with httpx.stream(
        "POST", f"{server.url}/v1/services/toolkit/spell", json={"text": "hi"}, headers=bearer(keys["stream"])
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [e for e in map(sse_event, response.iter_lines()) if e is not None]
    assert events == ["h", "i", "[DONE]"]


def test_a_streamed_line_separator_reaches_line_splitting_clients_whole(server, keys):
    """NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR are line ends to httpx's ``iter_lines`` (not to SSE): sent raw,
    each would cut its event in two halves that are not JSON."""
    text = "a\x85b\u2028c\u2029d"
    client = Client(server.url, api_key=keys["stream"])
    assert "".join(client.call("spell", text=text)) == text
    with httpx.stream(
        "POST", f"{server.url}/v1/services/toolkit/spell", json={"text": text}, headers=bearer(keys["stream"])
    ) as response:
        events = [e for e in map(sse_event, response.iter_lines()) if e is not None]
    assert events == [*text, "[DONE]"]


def test_schemas_from_type_hints_are_in_openapi_and_a_bad_field_is_a_400_naming_it(server, keys):
    headers = bearer(keys["misc"])
    schema = httpx.get(f"{server.url}/openapi.json", headers=headers).json()
    operation = schema["paths"]["/v1/services/toolkit/score"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][body]
    assert fields["properties"]["query"]["type"] == "string" and sorted(fields["required"]) == ["passage", "query"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "number"
    assert operation["security"] == [{"apiKey": []}]
    url = f"{server.url}/v1/services/toolkit/divide"
    wrong = httpx.post(url, json={"a": "many"}, headers=headers)
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "a"
    unknown = httpx.post(url, json={"a": 1, "c": 2}, headers=headers)
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "c"
    assert httpx.post(url, json={"a": 3, "b": 2}, headers=headers).json() == 1.5


def test_service_routes_need_a_key_and_count_against_its_rate_limit(server, keys):
    url = f"{server.url}/v1/services/toolkit/echo"
    assert httpx.post(url, json={"text": "x"}).status_code == 401
    assert httpx.post(url, json={"text": "x"}, headers=bearer("lk-not-a-key")).status_code == 401
    assert httpx.get(f"{server.url}/v1/services").status_code == 401
    with httpx.Client(headers=bearer(keys["limit"])) as http:
        statuses = [http.post(url, json={"text": "x"}).status_code for _ in range(RPM + 5)]
    assert statuses[:RPM] == [200] * RPM and 429 in statuses[RPM:]  # the bucket refills 80 per minute meanwhile
    metrics = httpx.get(f"{server.url}/metrics", headers=bearer(keys["misc"])).text
    assert 'leptonkit_requests_total{adapter="",endpoint="/v1/services/toolkit/echo",model="toolkit",status="200"}' in (
        metrics
    )


def test_the_safety_policy_filters_string_arguments_and_results(keys):
    with serve_thread(services=[TOOLKIT], home=keys["home"], safety_blocklist=["abcabc"]) as server:
        client = Client(server.url)
        assert client.call("repeat", text="ab") == "abab"
        for refused in ({"text": "xabcabcx", "times": 1}, {"text": "abc"}):  # flagged input; flagged output
            with pytest.raises(ApiError) as raised:
                client.call("repeat", **refused)
            assert (raised.value.http_status, raised.value.error_type) == (400, "invalid_request_error")
            assert "safety policy" in str(raised.value)
        with pytest.raises(ApiError, match="stopped by this server's safety policy"):
            list(client.call("spell", text="abc", times=3))


def test_a_handler_that_raises_is_a_500_with_a_request_id_and_the_server_goes_on(server, keys):
    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append  # type: ignore[method-assign]
    logging.getLogger(ACCESS_LOGGER).addHandler(handler)
    try:
        client = Client(server.url, api_key=keys["misc"])
        with pytest.raises(ApiError) as raised:
            client.call("divide", a=1, b=0)
    finally:
        logging.getLogger(ACCESS_LOGGER).removeHandler(handler)
    assert raised.value.http_status == 500 and raised.value.error_type == "server_error"
    errors = [r.msg for r in lines if isinstance(r.msg, dict) and r.msg.get("event") == "service_error"]
    assert len(errors) == 1 and "ZeroDivisionError" in errors[0]["traceback"]
    assert errors[0]["request_id"] in str(raised.value)
    assert client.call("divide", a=1, b=4) == 0.25 and client.call("echo", text="still here") == "still here"


def test_a_service_claiming_a_built_in_route_is_refused_before_the_server_starts():
    from leptonkit.serve.app import create_app
    from leptonkit.serve.config import ServeConfig

    with pytest.raises(InvalidInputError, match="/v1/classify collides"):
        create_app(ServeConfig(services=[f"{SERVICES / 'toolkit.py'}:Shadow"]))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("toolkit.py:NoEndpoints", "service NoEndpoints has no endpoints"),
        ("toolkit.py:NoHints", "NoHints.score: parameter 'query' has no type hint"),
        ("broken.py:Broken", "does not import (ModuleNotFoundError"),
        ("toolkit.py:Missing", "has no class Missing (services there: NoEndpoints, NoHints, Shadow, Toolkit)"),
    ],
)
def test_bad_services_are_one_line_and_exit_2(cli, tmp_path, spec, message):
    # the file that does not import is written here: shipped under tests/, its import would be an undeclared dependency
    (tmp_path / "broken.py").write_text(BROKEN)
    folder = tmp_path if spec.startswith("broken.py") else SERVICES
    done = cli("serve", "--service", str(folder / spec))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
