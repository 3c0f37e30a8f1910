"""all-MiniLM-L6-v2 (``builtin:minilm``) fine-tuned for NER on CoNLL-2003: test entity F1, full and LoRA.

Target: full fine-tuning test entity F1 >= 0.85; LoRA is reported. Data: CoNLL-2003 train/valid/test prepared by
``leptonkit.data.prepare``.

    .venv/bin/python benchmarks/finetune_conll.py --epochs 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune_common import machine, prepared_conll, print_one_run, run_each_in_subprocess, write_result
from leptonkit.train.recipe import NER_FULL_TRAIN  # the recipe pii-setup trains with, too

SETTINGS = {
    "full": {"lr": NER_FULL_TRAIN["lr"]},
    "lora": {
        "lr": 1e-3,
        "lora": {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": ["query", "key", "value", "dense"]},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=NER_FULL_TRAIN["epochs"])
    parser.add_argument("--batch-size", type=int, default=NER_FULL_TRAIN["batch_size"])
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--methods", default="full,lora")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = prepared_conll()
    if args.only:
        print_one_run(
            data,
            "ner",
            args.only,
            args.max_minutes,
            epochs=args.epochs,
            batch_size=args.batch_size,
            **SETTINGS[args.only],
        )
        return
    argv = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    if args.max_minutes:
        argv += ["--max-minutes", str(args.max_minutes)]
    info = machine()
    runs = run_each_in_subprocess(Path(__file__), args.methods.split(","), argv)
    summary = {
        r["method"]: {
            "test_entity_f1": r["metrics"]["test"]["entity_f1"],
            "valid_entity_f1": r["metrics"]["valid"].get("entity_f1"),
            "train_seconds": r["metrics"]["training"]["train_seconds"],
            "samples_per_second": r["metrics"]["training"]["samples_per_second"],
            "peak_memory_mb": r["metrics"]["training"]["peak_memory_mb"],
            "status": r["metrics"]["training"]["status"],
        }
        for r in runs
        if "metrics" in r
    }
    write_result(
        "finetune_conll",
        {
            "benchmark": "finetune_conll",
            "setup": {
                "base": "builtin:minilm",
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "max_minutes": args.max_minutes,
            },
            "machine": info,
            "summary": summary,
            "targets": {"full_test_entity_f1": 0.85},
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
