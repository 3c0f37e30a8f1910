"""Encoder dynamic batching: ``/v1/classify`` with MiniLM at 32 concurrent clients, batched vs one at a time.

The same server command runs twice: with dynamic batching (``--encoder-max-batch 32 --encoder-max-wait-ms 5``) and
one request per forward (``--encoder-max-batch 1 --encoder-max-wait-ms 0``). The clients share one ``aiohttp``
session (as ``leptonkit bench serve`` does): they run on the same CPUs as the server. Then the forward alone is
timed at batch 1 and 32 (no HTTP): its ratio bounds the speedup. Writes ``benchmarks/results/serve_encoder.json``.

    .venv/bin/python benchmarks/serve_encoder.py [--requests 512]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from serve_common import RESULTS, leptonkit_server

SENTENCES = [
    "The film was a delight from start to finish.",
    "I want my two hours back.",
    "A solid, if unremarkable, thriller.",
    "Absolutely stunning performances all round.",
]


def make_classifier(home: Path) -> None:
    """MiniLM with a (random) two-label head, registered as ``sentiment``: the speed is the encoder's."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from leptonkit.registry import Registry
    from leptonkit.registry.store import builtin_source

    source = builtin_source("builtin:minilm")[0]
    labels = {0: "negative", 1: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(source, id2label=labels, label2id={"negative": 0})
    Registry(home).register(
        model, name="sentiment", task="classification", tokenizer=AutoTokenizer.from_pretrained(source)
    )


async def load(url: str, requests: int, clients: int) -> dict:
    endpoint = f"{url}/v1/classify"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), raise_for_status=True) as http:
        counter = iter(range(requests))

        async def client() -> int:
            done = 0
            for i in counter:
                body = {"model": "sentiment", "input": SENTENCES[i % len(SENTENCES)]}
                async with http.post(endpoint, json=body) as response:
                    await response.read()
                done += 1
            return done

        async with http.post(endpoint, json={"model": "sentiment", "input": SENTENCES}) as response:  # warm-up
            await response.read()
        start = time.perf_counter()
        done = sum(await asyncio.gather(*(client() for _ in range(clients))))  # 32 clients, one request each at a time
        seconds = time.perf_counter() - start
    return {"requests": done, "seconds": seconds, "requests_per_s": done / seconds}


def mean_batch(url: str) -> float:
    """Inputs per encoder forward, from the server's own ``leptonkit_batch_size`` histogram."""
    samples = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("leptonkit_batch_size_") and 'model="sentiment"' in line:
            samples[line.split("{")[0]] = float(line.rsplit(" ", 1)[1])
    return samples["leptonkit_batch_size_sum"] / max(samples["leptonkit_batch_size_count"], 1)


def model_only(home: Path, threads: int, batches: tuple[int, ...] = (1, 32), repeats: int = 30) -> dict[str, float]:
    """Milliseconds per request of the forward alone (as the server runs it: bf16 where supported, packed linears,
    packed batches), by batch size: the ratio of its batch-1 and batched costs bounds the speedup any server can
    show."""
    import torch

    from leptonkit import inference
    from leptonkit.registry import Registry
    from leptonkit.registry.loading import load_model
    from leptonkit.serve.engine import packed_encoder
    from leptonkit.serve.engine.cpu_linear import pack_linears
    from leptonkit.serve.models import torch_dtype

    torch.set_num_threads(threads)
    loaded = load_model("sentiment", registry=Registry(home), dtype=torch_dtype("auto"))
    pack_linears(loaded.model)
    packed_encoder.enable(loaded.model)
    per_request = {}
    for batch in batches:
        texts = [SENTENCES[i % len(SENTENCES)] for i in range(batch)]
        with packed_encoder.packing():
            inference.classify(loaded, texts)  # warm-up
            start = time.perf_counter()
            for _ in range(repeats):
                inference.classify(loaded, texts)
            per_request[f"batch_{batch}_ms_per_request"] = (time.perf_counter() - start) / repeats / batch * 1000
    return per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="Alternating rounds, so both see the same CPU load.")
    parser.add_argument("--max-wait-ms", default="5", help="The batched server's --encoder-max-wait-ms.")
    parser.add_argument("--threads", default="2", help="Both servers' --threads.")
    args = parser.parse_args()
    setups = {
        "one_at_a_time": ["--encoder-max-batch", "1", "--encoder-max-wait-ms", "0"],
        "dynamic_batching": ["--encoder-max-batch", "32", "--encoder-max-wait-ms", args.max_wait_ms],
    }
    totals = {label: {"requests": 0, "seconds": 0.0} for label in setups}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        home = Path(tmp)
        make_classifier(home)
        urls = {
            label: stack.enter_context(leptonkit_server(home, "sentiment", *flags, "--threads", args.threads))[0]
            for label, flags in setups.items()
        }
        for _ in range(args.rounds):
            for label, url in urls.items():
                run = asyncio.run(load(url, args.requests // args.rounds, args.clients))
                totals[label]["requests"] += run["requests"]
                totals[label]["seconds"] += run["seconds"]
        result = {label: t | {"requests_per_s": t["requests"] / t["seconds"]} for label, t in totals.items()}
        for label, url in urls.items():
            result[label]["mean_batch"] = mean_batch(url)
        stack.close()  # the servers stop before the model-only timing
        result["model_only"] = model_only(home, int(args.threads))
    result["threads"] = int(args.threads)
    result["speedup"] = result["dynamic_batching"]["requests_per_s"] / result["one_at_a_time"]["requests_per_s"]
    forward = result["model_only"]
    result["model_only_speedup_bound"] = forward["batch_1_ms_per_request"] / forward["batch_32_ms_per_request"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_encoder.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
