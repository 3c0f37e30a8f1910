"""``GET /metrics`` on a real server: request counters by route template, vLLM buckets, process and GPU gauges."""

from __future__ import annotations

import json
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from leptonkit.monitor import metrics, resources
from tests.security.server import OPS_APP, run_server


def _samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_endpoint_counts_requests_and_exposes_process_use(tmp_path_factory):
    env = {"LEPTONKIT_HOME": str(tmp_path_factory.mktemp("home")), "LEPTONKIT_TEST_OPS": json.dumps({})}
    with run_server(OPS_APP, tmp_path_factory.mktemp("log") / "server.log", env=env) as server:
        for _ in range(3):
            assert httpx.post(server.url + "/v1/echo", json={"model": "m1", "prompt": "a b"}).is_success
        assert httpx.post(server.url + "/v1/echo", json={"model": "typo-" * 10, "prompt": 5}).status_code == 422
        assert httpx.get(server.url + "/v1/models/x/y/z").status_code == 404
        assert httpx.post(server.url + "/v1/echo", content=b"{" * 2_000_000).status_code == 413
        response = httpx.get(server.url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    labels = (("adapter", ""), ("endpoint", "/v1/echo"), ("model", "m1"), ("status", "200"))
    assert samples[("leptonkit_requests_total", labels)] == 3
    # a refused request's model name never becomes a label (bounded series); unknown paths share "other"
    assert (
        samples[
            ("leptonkit_requests_total", (("adapter", ""), ("endpoint", "/v1/echo"), ("model", ""), ("status", "422")))
        ]
        == 1
    )
    assert (
        samples[
            ("leptonkit_requests_total", (("adapter", ""), ("endpoint", "other"), ("model", ""), ("status", "404")))
        ]
        == 1
    )
    assert samples[("leptonkit_errors_total", (("type", "body_too_large"),))] == 1
    buckets = sorted(
        float(dict(k[1])["le"])
        for k in samples
        if k[0] == "leptonkit_e2e_request_latency_seconds_bucket" and dict(k[1])["model"] == "m1"
    )
    assert buckets[:-1] == list(metrics.REQUEST_LATENCY_BUCKETS) and buckets[-1] == float("inf")
    assert samples[("leptonkit_process_resident_memory_bytes", ())] > 10e6
    assert samples[("leptonkit_process_cpu_seconds_total", ())] > 0
    for name in ("leptonkit_num_requests_running", "leptonkit_time_to_first_token_seconds"):
        assert f"# TYPE {name}" in response.text
    gpu_lines = [k for k in samples if k[0] == "leptonkit_gpu_memory_used_bytes"]
    assert bool(gpu_lines) == bool(resources.gpu_stats())  # present with NVML and a GPU, absent (not zero) without


def test_resource_snapshot_for_training_logs():
    first = resources.snapshot()
    start = time.process_time()
    while time.process_time() - start < 0.1:  # burn 100 ms of CPU: several clock ticks, whatever the machine load
        sum(i * i for i in range(10_000))
    second = resources.snapshot()
    assert second["rss_bytes"] > 10e6 and 0 < second["system_memory_percent"] <= 100
    assert second["cpu_percent"] > 0 and "cpu_percent" in first
    gpus = resources.gpu_stats()
    assert all(f"gpu{g['index']}_memory_used_bytes" in second for g in gpus)
    assert not any(k.startswith("gpu") for k in second) or gpus
