"""LoRA instruction tuning of the tiny pretrained model on Alpaca (``alpaca_small.json``, last 10% held out).

Target (issue 5): held-out loss on the response tokens lower than the base model's on the same records; sampled
answers go into ``results/sft_alpaca.json``. The base is ``shakespeare`` from ``pretrain_tinyshakespeare.py``
(any registered causal LM works: ``--base REF``).

    .venv/bin/python benchmarks/sft_alpaca.py --minutes 4
"""

from __future__ import annotations

import argparse
import time

from leptonkit.registry import Registry
from leptonkit.train.recipe import validate_recipe
from leptonkit.train.recipes import sft
from pretrain_common import SHARED, Collector, machine, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="shakespeare")
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--max-steps", type=int, default=120, help="sizes the cosine schedule")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--name", default="shakespeare-alpaca")
    args = parser.parse_args()

    recipe = validate_recipe(
        {
            "stage": "sft",
            "name": args.name,
            "base": args.base,
            "data": str(SHARED / "alpaca" / "alpaca_small.json"),
            "method": "lora",
            "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            "sft": {"valid_fraction": 0.1, "samples": 3, "sample_tokens": 48},
            "train": {
                "max_minutes": args.minutes,
                "max_steps": args.max_steps,
                "batch_size": args.batch_size,
                "max_length": args.max_length,
                "lr": args.lr,
                "precision": args.precision,
                "eval_every": args.max_steps,  # the base before training, then once at the end
                "checkpoint_every": 10_000,
                "early_stopping": None,
            },
        }
    )
    log = Collector()
    started = time.perf_counter()
    version = sft.run(recipe, registry=Registry(), log=log)
    metrics = version.metrics
    result = {
        "benchmark": "LoRA SFT on alpaca_small.json (last 10% held out), loss on response tokens",
        "ref": version.ref,
        "base": version.base,
        "machine": machine(),
        "settings": vars(args),
        "held_out_loss": metrics["valid"]["loss"],
        "base_held_out_loss": metrics["base"]["loss"],
        "target_met": metrics["valid"]["loss"] < metrics["base"]["loss"],
        "training": metrics["training"],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "sampled_answers_before_and_after": log.samples(),
        "log": [line for line in log.lines if not line.lstrip().startswith("Q:")],
    }
    write_result("sft_alpaca", result)


if __name__ == "__main__":
    main()
