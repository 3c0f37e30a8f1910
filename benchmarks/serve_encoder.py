"""Encoder dynamic batching: ``/v1/classify`` with MiniLM at 32 concurrent clients, batched vs one at a time.

The same server command runs twice: with dynamic batching (``--encoder-max-batch 32 --encoder-max-wait-ms 5``) and
one request per forward (``--encoder-max-batch 1 --encoder-max-wait-ms 0``). The clients share one ``aiohttp``
session (as ``leptonkit bench serve`` does): they run on the same CPUs as the server. The texts are the SST-2 dev
sentences (5-50 tokens; ``--texts short``: four short strings instead). Then the forward alone is timed at batch 1
and 32 (no HTTP) over the same texts: its ratio bounds the speedup where the serving work outside the forward costs
the same per request either way (on an AVX-512 BF16 CPU it cost more one at a time, and the speedup passed it).

Estimator, fixed before the run: the servers take turns for ``--rounds`` rounds; each setup's requests/s is its
total requests over its total seconds, and the speedup is the ratio of the two. Appends a run to
``benchmarks/results/serve_encoder_sst2.json`` (``serve_encoder.json`` for ``--texts short``).

``--soak SECONDS`` instead serves the batched setup alone for that long: 32 clients send 1-4 random SST-2 sentences
(some joined up to five long), and the server's resident memory is sampled every 10 s. Writes
``serve_encoder_soak.json``; the target is under 5% growth from the end of the first fifth to the end.

    .venv/bin/python benchmarks/serve_encoder.py [--requests 512] [--texts short|sst2] [--soak 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import random
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import psutil

from results_io import machine, write_result
from serve_common import REPO, leptonkit_server

SENTENCES = [
    "The film was a delight from start to finish.",
    "I want my two hours back.",
    "A solid, if unremarkable, thriller.",
    "Absolutely stunning performances all round.",
]
SST2_DEV = REPO.parent / "shared" / "data" / "sst2" / "dev.tsv"
SOAK_SAMPLE_S = 10.0


def sst2_sentences() -> list[str]:
    """The 872 SST-2 dev sentences (``../shared/data/sst2``)."""
    if not SST2_DEV.is_file():
        raise SystemExit(f"--texts sst2 and --soak read {SST2_DEV}, which is missing")
    with SST2_DEV.open(newline="") as handle:
        return [row["sentence"].strip() for row in csv.DictReader(handle, delimiter="\t")]


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


async def load(url: str, requests: int, clients: int, texts: list[str]) -> dict:
    endpoint = f"{url}/v1/classify"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), raise_for_status=True) as http:
        counter = iter(range(requests))

        async def client() -> int:
            done = 0
            for i in counter:
                body = {"model": "sentiment", "input": texts[i % len(texts)]}
                async with http.post(endpoint, json=body) as response:
                    await response.read()
                done += 1
            return done

        async with http.post(endpoint, json={"model": "sentiment", "input": texts[:32]}) as response:  # warm-up
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


async def soak(url: str, pid: int, seconds: float, clients: int, sentences: list[str]) -> dict:
    """``clients`` clients sending random SST-2 inputs for ``seconds``; resident memory every ``SOAK_SAMPLE_S``."""
    process = psutil.Process(pid)
    statuses: dict[str, int] = {}
    samples: list[dict[str, float]] = []
    start = time.monotonic()
    stop = start + seconds

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def client(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                joined = [rng.choice([1, 1, 1, 2, 5]) for _ in range(rng.randint(1, 4))]
                texts = [" ".join(rng.choice(sentences) for _ in range(n)) for n in joined]
                async with http.post(f"{url}/v1/classify", json={"model": "sentiment", "input": texts}) as response:
                    await response.read()
                statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1

        def sample() -> None:
            samples.append({"s": round(time.monotonic() - start, 1), "rss_mb": process.memory_info().rss / 2**20})

        async def sampler() -> None:
            while time.monotonic() < stop:
                sample()
                await asyncio.sleep(SOAK_SAMPLE_S)
            sample()

        await asyncio.gather(sampler(), *(client(i) for i in range(clients)))
    warm = next(x for x in samples if x["s"] >= seconds / 5)["rss_mb"]
    growth = samples[-1]["rss_mb"] / warm - 1
    return {
        "seconds": seconds,
        "clients": clients,
        "requests": sum(statuses.values()),
        "statuses": statuses,
        "rss_after_warmup_mb": warm,
        "rss_end_mb": samples[-1]["rss_mb"],
        "rss_growth": growth,
        "rss_samples": samples,
        "targets": {"all_200": set(statuses) == {"200"}, "rss_growth_under_5pct": growth < 0.05},
    }


def server_pid(url: str) -> int:
    """The pid of the ``leptonkit serve`` started with ``--port`` of ``url``."""
    port = url.rsplit(":", 1)[1]
    for process in psutil.process_iter(["cmdline"]):
        if (process.info["cmdline"] or [])[-2:] == ["--port", port]:
            return process.pid
    raise RuntimeError(f"no leptonkit serve process on port {port}")


def model_only(
    home: Path, threads: int, texts: list[str], batches: tuple[int, ...] = (1, 32), repeats: int = 30
) -> dict[str, float]:
    """Milliseconds per request of the forward alone (as the server runs it: bf16 where supported, packed linears,
    packed batches), by batch size, every batch size over the same ``repeats * max(batches)`` texts, timed on a
    second pass (a server that has run a while has built oneDNN's kernel for each number of rows; timing the first
    pass put the batched forward above the served one): the ratio of its batch-1 and batched costs is the speedup
    of the forward's share."""
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
    sample = [texts[i % len(texts)] for i in range(repeats * max(batches))]
    per_request = {}
    for batch in batches:
        batches_of_texts = [sample[i : i + batch] for i in range(0, len(sample), batch)]
        with packed_encoder.packing():
            for batch_texts in batches_of_texts:  # warm-up: oneDNN builds a kernel on each new number of rows
                inference.classify(loaded, batch_texts)
            start = time.perf_counter()
            for batch_texts in batches_of_texts:
                inference.classify(loaded, batch_texts)
            per_request[f"batch_{batch}_ms_per_request"] = (time.perf_counter() - start) / len(sample) * 1000
    return per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="Alternating rounds, so both see the same CPU load.")
    parser.add_argument("--max-wait-ms", default="5", help="The batched server's --encoder-max-wait-ms.")
    parser.add_argument("--threads", default="2", help="Both servers' --threads.")
    parser.add_argument("--texts", choices=["short", "sst2"], default="sst2", help="SST-2 dev, or four short strings.")
    parser.add_argument("--soak", type=float, default=None, help="Seconds of a memory soak of the batched server.")
    args = parser.parse_args()
    setups = {
        "one_at_a_time": ["--encoder-max-batch", "1", "--encoder-max-wait-ms", "0"],
        "dynamic_batching": ["--encoder-max-batch", "32", "--encoder-max-wait-ms", args.max_wait_ms],
    }
    texts = sst2_sentences() if args.texts == "sst2" or args.soak else SENTENCES
    info = machine()
    if args.soak:
        with tempfile.TemporaryDirectory() as tmp:
            make_classifier(Path(tmp))
            flags = setups["dynamic_batching"]
            with leptonkit_server(Path(tmp), "sentiment", *flags, "--threads", args.threads) as (url, _):
                result = asyncio.run(soak(url, server_pid(url), args.soak, args.clients, texts))
        write_result("serve_encoder_soak", result, info)
        print(json.dumps({k: v for k, v in result.items() if k != "rss_samples"}, indent=2))
        return
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
                run = asyncio.run(load(url, args.requests // args.rounds, args.clients, texts))
                totals[label]["requests"] += run["requests"]
                totals[label]["seconds"] += run["seconds"]
        result = {label: t | {"requests_per_s": t["requests"] / t["seconds"]} for label, t in totals.items()}
        for label, url in urls.items():
            result[label]["mean_batch"] = mean_batch(url)
        stack.close()  # the servers stop before the model-only timing
        result["model_only"] = model_only(home, int(args.threads), texts)
    result["threads"], result["texts"] = int(args.threads), args.texts
    result["speedup"] = result["dynamic_batching"]["requests_per_s"] / result["one_at_a_time"]["requests_per_s"]
    forward = result["model_only"]
    result["model_only_speedup_bound"] = forward["batch_1_ms_per_request"] / forward["batch_32_ms_per_request"]
    write_result("serve_encoder" if args.texts == "short" else f"serve_encoder_{args.texts}", result, info)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
