"""Every Prometheus metric leptonkit exports, named in one place (prefix ``leptonkit_``).

Bucket boundaries follow vLLM's (``vllm/v1/metrics/loggers.py``) so dashboards and alerts carry over.
Label values: ``model`` is the registry name a request asked for, ``adapter`` the adapter name or ``""``.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, ProcessCollector

from leptonkit.monitor.resources import GpuCollector

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
    30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)

REQUESTS = Counter(
    "leptonkit_requests",
    "HTTP requests finished, by endpoint, model, adapter and status code.",
    ["endpoint", "model", "adapter", "status"],
)
ERRORS = Counter("leptonkit_errors", "Errors by type (OpenAI error type or exception class).", ["type"])
TIME_TO_FIRST_TOKEN = Histogram(
    "leptonkit_time_to_first_token_seconds",
    "Time from arrival to the first generated token.",
    ["model"],
    buckets=TTFT_BUCKETS,
)
INTER_TOKEN_LATENCY = Histogram(
    "leptonkit_inter_token_latency_seconds",
    "Time between two generated tokens of one request.",
    ["model"],
    buckets=ITL_BUCKETS,
)
E2E_LATENCY = Histogram(
    "leptonkit_e2e_request_latency_seconds",
    "Time from arrival to the last byte of the response.",
    ["endpoint", "model"],
    buckets=REQUEST_LATENCY_BUCKETS,
)
QUEUE_TIME = Histogram(
    "leptonkit_request_queue_time_seconds",
    "Time a request waited before its first scheduling.",
    ["model"],
    buckets=REQUEST_LATENCY_BUCKETS,
)
PROMPT_TOKENS = Counter("leptonkit_prompt_tokens", "Prompt tokens processed.", ["model"])
GENERATION_TOKENS = Counter("leptonkit_generation_tokens", "Tokens generated.", ["model"])
RUNNING = Gauge("leptonkit_num_requests_running", "Requests in the running batch.", ["model"])
WAITING = Gauge("leptonkit_num_requests_waiting", "Requests queued, not yet scheduled.", ["model"])
BATCH_SIZE = Histogram(
    "leptonkit_batch_size", "Sequences (or inputs) per engine step.", ["model"], buckets=BATCH_SIZE_BUCKETS
)
ADAPTERS_LOADED = Gauge("leptonkit_adapters_loaded", "LoRA adapters loaded on a base model.", ["model"])
MODEL_MEMORY = Gauge("leptonkit_model_memory_bytes", "Bytes of a served model's weights and buffers.", ["model"])

# Operations (auth, limits, safety); recorded by leptonkit.serve (middleware, admission, safety).
AUTH_FAILURES = Counter("leptonkit_auth_failures", "Requests refused by authentication or scope.", ["reason"])
RATE_LIMITED = Counter("leptonkit_rate_limited", "Requests refused by a rate or concurrency limit.", ["limit"])
STREAMS_ACTIVE = Gauge("leptonkit_streams_active", "Streaming responses in progress.")
CONTENT_FILTERED = Counter(
    "leptonkit_content_filtered", "Inputs refused or outputs blocked or redacted by the safety policy.", ["action"]
)
# Process CPU seconds and resident memory under the leptonkit_ prefix, and GPUs through NVML when present.
PROCESS = ProcessCollector(namespace="leptonkit")
GPUS = GpuCollector()
REGISTRY.register(GPUS)
