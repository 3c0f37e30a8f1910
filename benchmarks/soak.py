"""Soak test of a real ``leptonkit serve`` with auth on: 16 concurrent clients mixing chat, classify and streaming
chat, a fifth of the streams dropped mid-way by their client, for ``--duration`` seconds (issue 7: 600).

Targets: zero 5xx; resident memory growth under 5% from the end of warm-up (the first fifth) to the end; no stuck
slots at the end (running, waiting and active-stream gauges back to 0). Models are tiny and random (a 2-layer
Llama with a BPE tokenizer, a 1-layer BERT classifier with the MiniLM tokenizer), built in a temporary registry.

    .venv/bin/python benchmarks/soak.py [--duration 600] [--clients 16] [--compile]

Writes ``benchmarks/results/soak.json`` (``soak_compile.json`` with ``--compile``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

from results_io import write_result
from serve_common import REPO, free_port, random_llama

CORPUS = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
PROMPTS = [
    "Tell me a story about the sea.",
    "What is the capital of France?",
    "Write a haiku on autumn.",
    "Summarise: the quick brown fox jumps over the lazy dog.",
    "Who wrote Hamlet, and when?",
]


def build_models(home: Path) -> str:
    """A tiny generator ``gen`` and classifier ``cls`` in the registry at ``home``; returns an inference key."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from leptonkit.registry import Registry
    from leptonkit.registry.store import builtin_source
    from leptonkit.security.keys import KeyStore

    text = CORPUS.read_text()[:200_000] if CORPUS.is_file() else " ".join(PROMPTS) * 2000
    model, tokenizer = random_llama(
        text,
        2048,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    registry = Registry(home)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        registry.register(tmp, name="gen", task="generation")
    minilm_tokenizer = AutoTokenizer.from_pretrained(builtin_source("builtin:minilm")[0])
    bert = BertConfig(
        vocab_size=minilm_tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=128,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    with tempfile.TemporaryDirectory() as tmp:
        BertForSequenceClassification(bert).save_pretrained(tmp)
        minilm_tokenizer.save_pretrained(tmp)
        registry.register(tmp, name="cls", task="classification")
    return KeyStore(home).create("soak", "inference")[1]


def start_server(home: Path, log: Path, args: list[str]) -> tuple[subprocess.Popen, str]:
    """Run ``python ARGS`` (``{port}`` in ARGS becomes a free port) against ``home`` until ``/ready`` answers."""
    port = free_port()
    command = [sys.executable, *(a.replace("{port}", str(port)) for a in args)]
    env = {**os.environ, "LEPTONKIT_HOME": str(home), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready in 300 s")


def gauges(url: str, key: str) -> dict[str, float]:
    from leptonkit.monitor.summary import parse

    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30).text
    totals = parse(text, 0.0).totals
    names = ("leptonkit_num_requests_running", "leptonkit_num_requests_waiting", "leptonkit_streams_active")
    return {name: totals.get(name, 0.0) for name in names}


async def client(url: str, key: str, stop: float, rng: random.Random, statuses: Counter, kinds: Counter) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        while time.monotonic() < stop:
            kind = rng.choice(["chat", "classify", "stream", "stream"])
            messages = [{"role": "user", "content": rng.choice(PROMPTS)}]
            try:
                if kind == "chat":
                    body = {"model": "gen", "messages": messages, "max_tokens": 16, "temperature": 0.8}
                    statuses[(await http.post("/v1/chat/completions", json=body)).status_code] += 1
                elif kind == "classify":
                    body = {"model": "cls", "input": [rng.choice(PROMPTS) for _ in range(rng.randint(1, 4))]}
                    statuses[(await http.post("/v1/classify", json=body)).status_code] += 1
                else:
                    body = {"model": "gen", "messages": messages, "max_tokens": 32, "stream": True}
                    drop = rng.random() < 0.2
                    kind = "stream_dropped" if drop else kind
                    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                        statuses[response.status_code] += 1
                        chunks = 0
                        async for _ in response.aiter_lines():
                            chunks += 1
                            if drop and chunks >= 3:
                                break  # leaving the block closes the connection mid-stream
                kinds[kind] += 1
            except httpx.HTTPError as err:
                statuses[f"client error {type(err).__name__}"] += 1


async def drive(url: str, key: str, seconds: float, clients: int, statuses: Counter, kinds: Counter) -> None:
    stop = time.monotonic() + seconds
    await asyncio.gather(*(client(url, key, stop, random.Random(i), statuses, kinds) for i in range(clients)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--compile", action="store_true", help="Serve with --compile; writes soak_compile.json.")
    args = parser.parse_args()
    statuses: Counter = Counter()
    kinds: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        key = build_models(home)
        serve = ["-m", "leptonkit.cli.main", "serve", "gen", "cls", "--port", "{port}", "--auth", "on"]
        serve += ["--compile"] if args.compile else []
        proc, url = start_server(home, home / "server.log", [*serve, "--max-streams-per-key", "64"])
        try:
            server = psutil.Process(proc.pid)
            warmup = args.duration / 5
            asyncio.run(drive(url, key, warmup, args.clients, statuses, kinds))
            rss_warm = server.memory_info().rss
            samples = [rss_warm]
            remaining = args.duration - warmup
            steps = max(int(remaining // 30), 1)
            for _ in range(steps):
                asyncio.run(drive(url, key, remaining / steps, args.clients, statuses, kinds))
                samples.append(server.memory_info().rss)
            time.sleep(2)  # dropped streams are noticed at the next token; give the engine a moment
            end_gauges = gauges(url, key)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        log_lines = sum(1 for line in (home / "server.log").read_text().splitlines() if line.startswith("{"))
    five_xx = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
    growth = (samples[-1] - rss_warm) / rss_warm
    result = {
        "duration_s": args.duration,
        "clients": args.clients,
        "requests": sum(kinds.values()),
        "by_kind": dict(kinds),
        "statuses": {str(k): v for k, v in statuses.items()},
        "five_xx": five_xx,
        "rss_after_warmup_mb": round(rss_warm / 2**20, 1),
        "rss_samples_mb": [round(s / 2**20, 1) for s in samples],
        "rss_growth": round(growth, 4),
        "end_gauges": end_gauges,
        "log_lines": log_lines,
        "targets": {
            "zero_5xx": five_xx == 0,
            "rss_growth_under_5pct": growth < 0.05,
            "no_stuck_slots": all(v == 0 for v in end_gauges.values()),
        },
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),  # inherited by the server when set
    }
    result["compile"] = args.compile
    write_result("soak_compile" if args.compile else "soak", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
