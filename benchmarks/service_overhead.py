"""What a custom service adds: a batched custom endpoint wrapping the MiniLM encoder against the built-in
``/v1/classify`` on the same model, in one server, in the same run (issue 21 target: service >= 0.9x built-in).

One ``leptonkit serve`` process serves ``minilm-cls`` (the real all-MiniLM-L6-v2 with a two-label classification
head) and ``examples/services/classifier.py:Classifier``, which loads the same model and answers each text with what
``/v1/classify`` answers for it (label, score, scores), batching concurrent requests (batch 32, 5 ms) as the encoder
engine does (its ``--encoder-max-batch 32``, ``--encoder-max-wait-ms 5``). 32 concurrent clients each send one
SST-2 sentence per request. Load alternates between the two routes in rounds (built-in, service, built-in, ...) so
that drift on a shared machine hits both alike.

Estimator, fixed before the run (``ESTIMATOR``): the median over rounds of the round's service/built-in ratio of
requests completed. The target is met when that median is >= 0.9; the totals are reported beside it, not judged.

    .venv/bin/python benchmarks/service_overhead.py [--rounds 4] [--round-seconds 6] [--clients 32]

Appends a run to ``benchmarks/results/service_overhead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from results_io import REPO, machine, write_result
from soak import start_server

ESTIMATOR = "median of per-round service/built-in ratios of requests completed"
TARGET_RATIO = 0.9
MODEL = "minilm-cls"
SERVICE = REPO / "examples" / "services" / "classifier.py"
SENTENCES = REPO / "examples" / "data" / "sentiment" / "dev.tsv"


def register_classifier(home: Path) -> None:
    """``minilm-cls``: all-MiniLM-L6-v2 with a (randomly initialised, seeded) two-label head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from leptonkit.registry import Registry
    from leptonkit.registry.store import builtin_source

    source = builtin_source("builtin:minilm")[0]
    torch.manual_seed(0)
    labels = {0: "negative", 1: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
        Registry(home).register(tmp, name=MODEL, task="classification")


def sentences() -> list[str]:
    with SENTENCES.open(encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f, delimiter="\t")]


def request(route: str, text: str) -> tuple[str, dict]:
    if route == "builtin":
        return "/v1/classify", {"model": MODEL, "input": text}
    return "/v1/services/classifier/classify", {"text": text}


async def load(url: str, route: str, texts: list[str], seconds: float, clients: int) -> int:
    """Requests completed (status 200) in ``seconds`` by ``clients`` concurrent loops, one sentence per request."""
    stop = time.monotonic() + seconds
    done = 0
    cycle = itertools.cycle(texts)

    async def loop(http: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < stop:
            path, body = request(route, next(cycle))
            response = await http.post(path, json=body)
            done += response.status_code == 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(*(loop(http) for _ in range(clients)))
    return done


def same_answers(url: str, texts: list[str]) -> bool:
    """Both routes give each text the same label (the service wraps the same model)."""
    builtin = httpx.post(f"{url}/v1/classify", json={"model": MODEL, "input": texts}, timeout=60).json()["data"]
    service = [httpx.post(f"{url}{request('service', t)[0]}", json={"text": t}, timeout=60).json() for t in texts]
    return [b["label"] for b in builtin] == [s["label"] for s in service]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--round-seconds", type=float, default=6.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    info = machine()
    result: dict = {"clients": args.clients, "rounds": args.rounds, "round_seconds": args.round_seconds}
    result |= {"threads": args.threads, "estimator": ESTIMATOR, "model": "all-MiniLM-L6-v2 + 2-label head"}
    texts = sentences()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        register_classifier(home)
        os.environ["CLASSIFIER_MODEL"] = MODEL
        command = ["-m", "leptonkit.cli.main", "serve", MODEL, "--service", f"{SERVICE}:Classifier"]
        command += ["--port", "{port}", "--threads", str(args.threads)]
        process, url = start_server(home, home / "server.log", command)
        try:
            result["same_labels"] = same_answers(url, texts[:16])
            for route in ("builtin", "service"):  # warm both
                asyncio.run(load(url, route, texts, 2, args.clients))
            counts: dict[str, list[int]] = {"builtin": [], "service": []}
            for _ in range(args.rounds):
                for route in counts:
                    counts[route].append(asyncio.run(load(url, route, texts, args.round_seconds, args.clients)))
        finally:
            process.terminate()
            process.wait(timeout=60)
    rps = {route: sum(c) / (args.rounds * args.round_seconds) for route, c in counts.items()}
    ratios = [s / b for s, b in zip(counts["service"], counts["builtin"], strict=True) if b]
    result |= {
        "requests_per_s_builtin": round(rps["builtin"], 1),
        "requests_per_s_service": round(rps["service"], 1),
        "ratio_of_totals": round(rps["service"] / rps["builtin"], 4),
        "round_ratios": [round(r, 4) for r in ratios],
        "median_round_ratio": round(statistics.median(ratios), 4),
        "rounds_counts": counts,
        "target_ratio": TARGET_RATIO,
    }
    result["meets_target"] = result["median_round_ratio"] >= TARGET_RATIO
    write_result("service_overhead", result, info)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
