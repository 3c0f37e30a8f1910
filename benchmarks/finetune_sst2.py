"""all-MiniLM-L6-v2 (``builtin:minilm``) fine-tuned on SST-2: dev accuracy of full fine-tuning and LoRA.

Targets: full >= 0.88, LoRA >= 0.86 dev accuracy; LoRA's peak training memory below full fine-tuning's. Each
method runs in its own process (peak resident memory per run). Data: a sample of SST-2 train (``--rows``; all
67,349 rows when 0) prepared by ``leptonkit.data.prepare``; the GLUE dev set (872 rows) is the validation split and
the reported one (GLUE's test labels are not public).

    .venv/bin/python benchmarks/finetune_sst2.py --rows 20000 --epochs 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune_common import machine, prepared_sst2, print_one_run, run_each_in_subprocess, write_result

# LoRA adapts the attention (query, key, value and its output projection), not the feed-forward layers: adapting
# those too (all ``dense`` modules) keeps the inputs of the 1,536-wide FFN projection for backward, which made LoRA's
# peak training memory larger than full fine-tuning's (results/finetune_sst2_memory.json).
SETTINGS = {
    "full": {"lr": 1e-4},
    "lora": {
        "lr": 1e-3,
        "lora": {
            "r": 16,
            "alpha": 32,
            "dropout": 0.1,
            "target_modules": ["query", "key", "value", "attention.output.dense"],
        },
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000, help="SST-2 training rows (0: all)")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--methods", default="full,lora")
    parser.add_argument("--result", default="finetune_sst2", help="result file name under benchmarks/results/")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = prepared_sst2(args.rows or None)
    if args.only:
        print_one_run(
            data,
            "classification",
            args.only,
            args.max_minutes,
            epochs=args.epochs,
            batch_size=args.batch_size,
            eval_every=None,
            **SETTINGS[args.only],
        )
        return
    argv = ["--rows", str(args.rows), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    if args.max_minutes:
        argv += ["--max-minutes", str(args.max_minutes)]
    info = machine()
    runs = run_each_in_subprocess(Path(__file__), args.methods.split(","), argv)
    summary = {
        r["method"]: {
            "dev_accuracy": r["metrics"]["valid"]["accuracy"],
            "dev_macro_f1": r["metrics"]["valid"]["macro_f1"],
            "train_seconds": r["metrics"]["training"]["train_seconds"],
            "samples_per_second": r["metrics"]["training"]["samples_per_second"],
            "peak_memory_mb": r["metrics"]["training"]["peak_memory_mb"],
            "memory_at_start_mb": r["metrics"]["training"].get("memory_at_start_mb"),
            "training_memory_mb": r["metrics"]["training"].get("training_memory_mb"),
            "trainable_parameters": r["metrics"]["training"]["trainable_parameters"],
            "status": r["metrics"]["training"]["status"],
        }
        for r in runs
        if "metrics" in r
    }
    write_result(
        args.result,
        {
            "benchmark": "finetune_sst2",
            "setup": {
                "base": "builtin:minilm",
                "train_rows": args.rows or 67349,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "dev_rows": 872,
                "max_minutes": args.max_minutes,
            },
            "machine": info,
            "summary": summary,
            "targets": {"full_dev_accuracy": 0.88, "lora_dev_accuracy": 0.86, "lora_peak_memory": "below full's"},
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
