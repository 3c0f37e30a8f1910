"""``leptonkit top``: rates and percentiles between two scrapes, and the CLI against a real server."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from leptonkit.monitor.summary import parse, quantile, summarize
from leptonkit.security.keys import KeyStore
from tests.security.server import OPS_APP, run_server


def test_quantile_interpolates_like_prometheus():
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.3)
    assert quantile(0.99, buckets) == pytest.approx(0.95)
    assert quantile(0.5, {1.0: 0.0, float("inf"): 0.0}) is None


def test_summary_between_two_scrapes():
    def text(ok: int, failed: int, fast: int, slow: int, tokens: int) -> str:
        return (
            f'leptonkit_requests_total{{endpoint="/v1/x",model="m",adapter="",status="200"}} {ok}\n'
            f'leptonkit_requests_total{{endpoint="/v1/x",model="m",adapter="",status="500"}} {failed}\n'
            f'leptonkit_e2e_request_latency_seconds_bucket{{endpoint="/v1/x",model="m",le="0.5"}} {fast}\n'
            f'leptonkit_e2e_request_latency_seconds_bucket{{endpoint="/v1/x",model="m",le="1.0"}} {fast + slow}\n'
            f'leptonkit_e2e_request_latency_seconds_bucket{{endpoint="/v1/x",model="m",le="+Inf"}} {fast + slow}\n'
            f'leptonkit_generation_tokens_total{{model="m"}} {tokens}\n'
            'leptonkit_num_requests_waiting{model="m"} 3\nleptonkit_process_resident_memory_bytes 1e9\n'
        )

    summary = summarize(parse(text(10, 0, 10, 0, 100), 0.0), parse(text(28, 2, 20, 10, 500), 2.0))
    assert summary["requests_per_s"] == pytest.approx(10.0)
    assert summary["error_ratio"] == pytest.approx(0.1)
    assert summary["generated_tokens_per_s"] == pytest.approx(200.0)
    assert summary["latency_p50_s"] == pytest.approx(0.5)  # 10 of the 20 new requests took <= 0.5 s
    assert summary["latency_p99_s"] == pytest.approx(0.99)
    assert summary["waiting"] == 3 and summary["rss_bytes"] == 1e9


def test_top_cli_reads_a_running_server(cli, home, tmp_path):
    _, key = KeyStore(home).create("watcher", "inference")
    env = {"LEPTONKIT_HOME": str(home), "LEPTONKIT_TEST_OPS": json.dumps({"auth": "on"})}
    with run_server(OPS_APP, tmp_path / "server.log", env=env) as server:
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as client:
                while not stop.is_set():
                    client.post(server.url + "/v1/echo", json={"prompt": "a b c"})

        worker = threading.Thread(target=load)
        worker.start()
        try:
            result = cli("top", server.url, "--key", key, "--interval", "1", "--json")
            refused = cli("top", server.url, "--once")
        finally:
            stop.set()
            worker.join()
    assert result.returncode == 0, result.stderr
    summary = result.json()
    assert summary["requests_per_s"] > 1 and summary["latency_p50_s"] > 0 and summary["rss_bytes"] > 10e6
    assert refused.returncode == 2 and "needs an API key" in refused.stderr and "LEPTONKIT_API_KEY" in refused.stderr
