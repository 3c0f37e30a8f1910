"""Turn two scrapes of a server's ``/metrics`` into what an operator watches: rates, percentiles, gauges.

Used by ``leptonkit top`` and the benchmarks. Percentiles interpolate within histogram buckets the way Prometheus'
``histogram_quantile`` does, over the requests that finished between the two scrapes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# not traffic: scrapes, probes, and the web console's own pages and polls (``serve --console``)
SCRAPE_ENDPOINTS = frozenset({"/metrics", "/health", "/ready", "/console"})


@dataclass
class Scrape:
    """One parse of ``/metrics``: sample totals by name (labels summed) and histogram buckets by name."""

    at: float
    totals: dict[str, float]
    buckets: dict[str, dict[float, float]]


def parse(text: str, at: float) -> Scrape:
    totals: dict[str, float] = defaultdict(float)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[sample.name.removesuffix("_bucket")][float(sample.labels["le"])] += sample.value
            elif sample.name == "leptonkit_requests_total":
                if sample.labels.get("endpoint") in SCRAPE_ENDPOINTS:
                    continue  # top's own scrapes (and Prometheus') are not traffic
                if sample.labels.get("status", "").startswith("5"):
                    totals["leptonkit_requests_5xx_total"] += sample.value
                totals[sample.name] += sample.value
            else:
                totals[sample.name] += sample.value
    return Scrape(at, dict(totals), {k: dict(v) for k, v in buckets.items()})


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of cumulative ``{upper bound: count}`` buckets, or ``None`` without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def summarize(before: Scrape, after: Scrape) -> dict[str, float | None]:
    """Rates and percentiles between two scrapes, and the gauges of the second."""
    seconds = max(after.at - before.at, 1e-9)

    def rate(name: str) -> float:
        return max(after.totals.get(name, 0.0) - before.totals.get(name, 0.0), 0.0) / seconds

    def window(name: str) -> dict[float, float]:
        old = before.buckets.get(name, {})
        return {bound: count - old.get(bound, 0.0) for bound, count in after.buckets.get(name, {}).items()}

    requests = rate("leptonkit_requests_total")
    latency = window("leptonkit_e2e_request_latency_seconds")
    ttft = window("leptonkit_time_to_first_token_seconds")
    itl = window("leptonkit_inter_token_latency_seconds")
    return {
        "requests_per_s": requests,
        "error_ratio": rate("leptonkit_requests_5xx_total") / requests if requests else 0.0,
        "latency_p50_s": quantile(0.5, latency),
        "latency_p99_s": quantile(0.99, latency),
        "ttft_p50_s": quantile(0.5, ttft),
        "ttft_p99_s": quantile(0.99, ttft),
        "itl_p50_s": quantile(0.5, itl),
        "prompt_tokens_per_s": rate("leptonkit_prompt_tokens_total"),
        "generated_tokens_per_s": rate("leptonkit_generation_tokens_total"),
        "running": after.totals.get("leptonkit_num_requests_running", 0.0),
        "waiting": after.totals.get("leptonkit_num_requests_waiting", 0.0),
        "streams": after.totals.get("leptonkit_streams_active", 0.0),
        "adapters_loaded": after.totals.get("leptonkit_adapters_loaded", 0.0),
        "cpu_cores": rate("leptonkit_process_cpu_seconds_total"),
        "rss_bytes": after.totals.get("leptonkit_process_resident_memory_bytes"),
        "gpu_utilization_percent": after.totals.get("leptonkit_gpu_utilization_percent"),
        "gpu_memory_used_bytes": after.totals.get("leptonkit_gpu_memory_used_bytes"),
    }
