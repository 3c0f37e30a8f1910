"""Structured outputs in the continuous batch: a batch of 32 where half the requests decode under a JSON schema
(xgrammar's token masks, ``serve/engine/grammar.py``) vs the same batch unconstrained, and the cost of compiling a
schema the first time vs finding it in the cache.

Model: the real SmolLM2-135M-Instruct (``builtin:smollm2``, 49,152-token vocabulary: the mask covers all of it),
float32, served by ``leptonkit serve --threads 1``. Every request asks for ``OUTPUT_LEN`` tokens with
``ignore_eos``; the schema (a list of at least 20 orders: nested objects with enums, bounded strings, integers,
booleans and arrays of objects) cannot complete sooner, so each row, constrained or not, emits exactly
``OUTPUT_LEN`` tokens and the two batches do the same work but for the masks. Throughput is output tokens over the
batch's wall time (all 32 requests sent at once, non-streamed).

Compile latency: one request of ``max_tokens`` 1 with a schema the server has not seen (its grammar is compiled
against the tokenizer, after a first structured request built the tokenizer's info), then the same request again
(the grammar comes from the cache), and the same request unconstrained.

Estimator, fixed before the run: per batch kind, the median of ``REPEATS`` runs, the kinds taking turns; the ratio
is median over median. Latencies: the first request once; repeats and unconstrained, the median of ``REPEATS``.

    .venv/bin/python benchmarks/structured_outputs.py

Appends a run to ``benchmarks/results/structured_outputs.json``.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from results_io import machine, write_result
from serve_common import leptonkit_server

BATCH = 32
OUTPUT_LEN = 64
REPEATS = 3
TARGET = 0.85
PROMPTS = ["Write an order.", "List some orders.", "Invent three orders.", "Describe a delivery."]
ORDER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 9999},
        "status": {"enum": ["new", "paid", "shipped", "returned"]},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "maxLength": 8},
                    "quantity": {"type": "integer", "minimum": 1},
                },
                "required": ["sku", "quantity"],
            },
            "minItems": 1,
            "maxItems": 4,
        },
        "gift": {"type": "boolean"},
    },
    "required": ["id", "status", "lines", "gift"],
}
LONG = {
    "type": "object",
    "properties": {"orders": {"type": "array", "items": ORDER, "minItems": 20}},
    "required": ["orders"],
}


def json_schema(schema: dict, name: str) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


async def one(client: httpx.AsyncClient, index: int, constrained: bool, max_tokens: int = OUTPUT_LEN) -> dict:
    body = {
        "model": "smol",
        "messages": [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}],
        "max_tokens": max_tokens,
        "temperature": 1.0,
        "seed": index,
        "ignore_eos": True,
    }
    if constrained:
        body["response_format"] = json_schema(LONG, "orders")
    response = await client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    return response.json()


async def batch(url: str, mixed: bool) -> dict:
    """All ``BATCH`` requests at once; with ``mixed`` the even ones under the schema."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        start = time.perf_counter()
        answers = await asyncio.gather(*(one(client, i, mixed and i % 2 == 0) for i in range(BATCH)))
        seconds = time.perf_counter() - start
    tokens = sum(a["usage"]["completion_tokens"] for a in answers)
    assert tokens == BATCH * OUTPUT_LEN, tokens  # every row ran its full length: the batches did the same work
    return {"seconds": seconds, "output_tokens": tokens, "output_throughput": tokens / seconds}


async def latency(url: str, response_format: dict | None) -> float:
    body = {"model": "smol", "messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 1}
    if response_format is not None:
        body["response_format"] = response_format
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        start = time.perf_counter()
        response = await client.post("/v1/chat/completions", json=body)
        seconds = time.perf_counter() - start
    response.raise_for_status()
    return seconds


def main() -> None:
    from leptonkit.registry import Registry

    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        Registry(home).register("builtin:smollm2", name="smol", task="generation")
        with leptonkit_server(home, "smol", "--threads", "1", "--dtype", "float32", "--max-num-seqs", "64") as (
            url,
            _,
        ):
            asyncio.run(latency(url, json_schema({"type": "object"}, "warm")))  # the tokenizer's info, once
            first = asyncio.run(latency(url, json_schema(ORDER, "order")))
            repeat = [asyncio.run(latency(url, json_schema(ORDER, "order"))) for _ in range(REPEATS)]
            plain = [asyncio.run(latency(url, None)) for _ in range(REPEATS)]
            asyncio.run(batch(url, mixed=True))  # warm-up: the long schema compiled, both paths run once
            runs: dict[str, list[dict]] = {"unconstrained": [], "half_json_schema": []}
            for _ in range(REPEATS):
                runs["unconstrained"].append(asyncio.run(batch(url, mixed=False)))
                runs["half_json_schema"].append(asyncio.run(batch(url, mixed=True)))
    medians = {kind: statistics.median(r["output_throughput"] for r in rs) for kind, rs in runs.items()}
    ratio = medians["half_json_schema"] / medians["unconstrained"]
    result = {
        "workload": {
            "batch": BATCH,
            "constrained": BATCH // 2,
            "output_len": OUTPUT_LEN,
            "model": "builtin:smollm2",
            "dtype": "float32",
            "threads": 1,
            "temperature": 1.0,
        },
        "estimator": f"median of {REPEATS} runs per kind, taking turns; ratio of medians",
        "runs": runs,
        "output_throughput": medians,
        "ratio": ratio,
        "target": TARGET,
        "met": ratio >= TARGET,
        "schema_latency_s": {
            "first_request_new_schema": first,
            "repeat_request_cached": statistics.median(repeat),
            "unconstrained": statistics.median(plain),
        },
    }
    print(f"half json_schema vs unconstrained: {ratio:.3f}x ({medians})")
    print(f"schema latency: first {first * 1000:.0f} ms, repeat {statistics.median(repeat) * 1000:.0f} ms, "
          f"unconstrained {statistics.median(plain) * 1000:.0f} ms")  # fmt: skip
    write_result("structured_outputs", result, info)


if __name__ == "__main__":
    main()
