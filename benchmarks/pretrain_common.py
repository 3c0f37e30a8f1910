"""Helpers shared by the ``pretrain_*`` and ``sft_*`` benchmarks: a measured matmul peak, runs, and result files."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from results_io import REPO, RESULTS, SHARED, machine, write_result  # noqa: F401  (re-exported)


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, ...] = (1024, 2048, 3072), seconds: float = 2.0) -> float:
    """The best measured square-matmul throughput in FLOP/s at ``dtype`` on this machine, with its current load."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / len(sizes):
            a @ b
            count += 1
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start))
    return best


class Collector:
    """A ``log`` callback for the recipes: echoes every line and keeps the sampled texts for the result file."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def samples(self) -> list[str]:
        return [line.strip() for line in self.lines if line.lstrip().startswith(("sample:", "Q:"))]


def seconds_per_step(config: Any, batch_size: int, block_size: int, precision: str, steps: int = 2) -> float:
    """Measured seconds per optimiser step of a fresh model of ``config`` at ``precision`` (bf16 autocast or fp32,
    as the loop runs them); sizes ``max_steps`` so that the cosine schedule ends when the time budget does."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (batch_size, block_size))
    timings = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        timings.append(time.perf_counter() - start)
    return sorted(timings[1:])[len(timings[1:]) // 2]


def pretrain_parser(doc: str, *, name: str, minutes: float) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=minutes, help="training wall-clock budget")
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--evaluations", type=int, default=2, help="held-out evaluations (the last at the end)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], help="default: the faster one, measured")
    parser.add_argument("--name", default=name, help="registry name of the trained model")
    return parser


def pretrain_benchmark(
    corpus: Path, args: argparse.Namespace, *, result_name: str, title: str, target_nats_per_char: float | None = None
) -> dict[str, Any]:
    """Pretrain the tiny preset on ``corpus`` (last 10% held out) within ``args.minutes``; register it in
    ``LEPTONKIT_HOME``; write ``results/<result_name>.json`` with held-out metrics, tokens/s and MFU."""
    from leptonkit.registry import Registry
    from leptonkit.train.presets import llama_config
    from leptonkit.train.recipe import validate_recipe
    from leptonkit.train.recipes import pretrain

    peaks = {"bf16": matmul_peak(torch.bfloat16), "fp32": matmul_peak(torch.float32)}
    print({k: f"{v / 1e9:.1f} GFLOP/s" for k, v in peaks.items()})
    config = llama_config("tiny", vocab_size=args.vocab_size)
    # bf16 autocast is the loop's default here (this CPU has AVX-512 BF16), but at this model size its casts can
    # cost more than its faster matmuls save: measure both and train with the faster one
    calibration = {p: seconds_per_step(config, args.batch_size, args.block_size, p) for p in ("bf16", "fp32")}
    precision = args.precision or min(calibration, key=calibration.get)
    # evaluations and sampling take about 15% of the budget; the cosine schedule is sized to the rest
    max_steps = max(10, int(args.minutes * 60 * 0.85 / calibration[precision]))
    print(f"seconds per step {calibration} -> {precision}, max_steps {max_steps}")
    recipe = validate_recipe(
        {
            "stage": "pretrain",
            "name": args.name,
            "data": str(corpus),
            "pretrain": {
                "preset": "tiny",
                "vocab_size": args.vocab_size,
                "block_size": args.block_size,
                "valid_fraction": 0.1,
                "samples": 2,
                "sample_tokens": 48,
            },
            "train": {
                "max_minutes": args.minutes,  # the hard bound
                "max_steps": max_steps,
                "batch_size": args.batch_size,
                "precision": precision,
                "lr": args.lr,
                "eval_every": max(1, max_steps // args.evaluations),
                "checkpoint_every": 10_000,
                "early_stopping": None,
            },
        }
    )
    log = Collector()
    started = time.perf_counter()
    version = pretrain.run(recipe, registry=Registry(), log=log)
    training, valid = version.metrics["training"], version.metrics["valid"]
    flops = 6 * version.parameters * training["tokens_per_second"]
    result = {
        "benchmark": title,
        "ref": version.ref,
        "machine": machine(),
        "settings": vars(args) | {"max_steps": max_steps, "calibrated_seconds_per_step": calibration},
        "parameters": version.parameters,
        "held_out": valid,
        "held_out_nats_per_char": valid["nats_per_char"],
        "training": training,
        "tokens_per_second": training["tokens_per_second"],
        "matmul_peak_flops": peaks,
        "mfu_vs_bf16_peak": flops / peaks["bf16"],
        "mfu_vs_fp32_peak": flops / peaks["fp32"],
        "wall_seconds_including_tokenizer_and_evaluation": round(time.perf_counter() - started, 1),
        "samples_at_last_evaluation": log.samples()[-2:],
        "log": [line for line in log.lines if not line.lstrip().startswith("sample:")],
    }
    if target_nats_per_char is not None:
        result |= {
            "target_nats_per_char": target_nats_per_char,
            "target_met": valid["nats_per_char"] <= target_nats_per_char,
        }
    write_result(result_name, result)
    return result
