"""Ready means warm: the compiled engine's first loaded round against its later ones, with the warm-up of every batch
size (``CompiledStep.warm_up`` up to ``max_num_seqs``) and with the old one (batch sizes 1 and 2 only).

Workload of issue 18 on the serving benchmark's 17M Llama: right after the engine is started (compiled, warmed up),
``ROUNDS`` rounds of 64 requests (32-token prompts, 64 output tokens, greedy, ``ignore_eos``) at 32 concurrent,
through the engine in-process (no HTTP), one torch thread.

Estimator, fixed before the run: per variant, the first round's tokens/s over the median of the later rounds
(target: >= 0.9, the first loaded minute within 10% of steady state).

    lkbench .venv/bin/python benchmarks/serve_warmup.py

Appends a run to ``benchmarks/results/serve_warmup.json``.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
import sys
import time

from results_io import machine, write_result
from serve_common import REPO, random_llama

ROUNDS, REQUESTS, CONCURRENT, PROMPT, OUTPUT = 5, 64, 32, 32, 64


def rounds(model, tokenizer, max_rows: int | None) -> dict:
    """Start a compiled engine (warmed up to ``max_rows`` batch sizes; None: ``max_num_seqs``) and time the rounds."""
    from leptonkit.serve.engine import generate
    from leptonkit.serve.engine.base import SamplingParams
    from leptonkit.serve.engine.compiled_step import compiled_step

    if max_rows is not None:  # the old warm-up: the engine asks for max_num_seqs, this gives max_rows
        generate.compiled_step = lambda fused, context, _asked: compiled_step(fused, context, max_rows)
    engine = generate.NativeEngine("bench", model, tokenizer, max_num_seqs=64, threads=1, compile=True)
    rng = random.Random(0)
    params = SamplingParams(max_tokens=OUTPUT, temperature=0, ignore_eos=True)

    async def run() -> dict:
        start = time.perf_counter()
        await engine.start()
        while not engine._started.is_set():
            await asyncio.sleep(0.05)
        ready_s = time.perf_counter() - start
        limit = asyncio.Semaphore(CONCURRENT)

        async def one() -> int:
            async with limit:
                ids = [rng.randrange(100, 1000) for _ in range(PROMPT)]
                return sum([len(d.token_ids) async for d in engine.generate(ids, params)])

        speeds = []
        try:
            for _ in range(ROUNDS):
                began = time.perf_counter()
                tokens = sum(await asyncio.gather(*(one() for _ in range(REQUESTS))))
                speeds.append(tokens / (time.perf_counter() - began))
        finally:
            await engine.stop()
        steady = statistics.median(speeds[1:])
        return {"ready_s": ready_s, "tokens_per_s": speeds, "first_vs_steady": speeds[0] / steady}

    return asyncio.run(run())


def variant(max_rows: int | None) -> dict:
    """One variant in a fresh process: kernels' per-shape state is process-wide, so a second engine would find it."""
    argv = [sys.executable, __file__, "--max-rows", str(max_rows or 0)]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()[-1])


def main() -> None:
    if "--max-rows" in sys.argv:
        import torch

        torch.set_num_threads(1)
        text = (REPO / "tests" / "samples" / "tinyshakespeare" / "input.txt").read_text()
        model, tokenizer = random_llama(text, 8192, max_position_embeddings=512)
        print(json.dumps(rounds(model.eval(), tokenizer, int(sys.argv[-1]) or None)))
        return
    info = machine()
    result = {
        "workload": {
            "rounds": ROUNDS,
            "requests": REQUESTS,
            "concurrent": CONCURRENT,
            "prompt": PROMPT,
            "output": OUTPUT,
            "threads": 1,
        },
        "warm_two_batch_sizes": variant(2),
        "warm_every_batch_size": variant(None),
    }
    write_result("serve_warmup", result, info)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
