"""Raw-text NER entity F1 of MiniLM fine-tuned on CoNLL-2003 train de-identified under ``data prepare``'s old and new
PII defaults; appends a run to ``benchmarks/results/ner_pii_defaults.json``.

- old: ``--pii mask --pii-types all`` (what ``data prepare`` did for every task before): names, places, dates and
  organisations in the training text become ``[PERSON]``, ``[LOCATION]``, ``[DATE]`` ... tokens.
- new: the defaults now (``--pii auto``, ``--pii-types direct``): NER data is pseudonymised (a labelled name becomes a
  realistic fake name, tags aligned), places, dates and organisations are kept.
- raw: ``--pii off``, the ceiling.

Valid and test are the raw CoNLL files in every case: the score asks how well a model trained on de-identified text
reads real text. Each variant is one short fine-tune (``--train-sentences`` of train, ``--epochs``), in its own
subprocess, with the detector as it comes (no ``@pii`` model).

    .venv/bin/python benchmarks/ner_pii_defaults.py --train-sentences 4000 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from finetune_common import SHARED, WORK, finetune_once, machine, write_result
from leptonkit.train.recipe import NER_FULL_TRAIN

VARIANTS = {
    "old": {"pii": "mask", "pii_types": "all"},
    "new": {"pii": "auto", "pii_types": "direct"},
    "raw": {"pii": "off"},
}


def prepared(variant: str, sentences: int) -> tuple[Path, dict[str, Any]]:
    """CoNLL train's first ``sentences`` sentences de-identified as ``variant`` says; raw valid and test beside."""
    from leptonkit.data import prepare

    out = WORK / f"conll-pii-{variant}-{sentences}"
    raw = WORK / "conll2003-raw-eval"
    blocks = (SHARED / "conll2003" / "train.txt").read_text(encoding="utf-8").split("\n\n")
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.txt"
        train.write_text("\n\n".join(blocks[: sentences + 1]) + "\n", encoding="utf-8")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            manifest = prepare(
                [train],
                task="ner",
                out=out,
                split="1,0",
                dedup="off",
                overwrite=True,
                pii_key="bench",
                **VARIANTS[variant],
            )
            if not (raw / "test.jsonl").is_file():
                evaluation = [str(SHARED / "conll2003" / f"{name}.txt") for name in ("valid", "test")]
                prepare(evaluation, task="ner", out=raw, pii="off", dedup="off", overwrite=True)
    for name in ("valid.jsonl", "test.jsonl"):
        shutil.copy(raw / name, out / name)
    return out, manifest["pii"]


def one(variant: str, sentences: int, epochs: float, batch_size: int) -> dict[str, Any]:
    data, pii = prepared(variant, sentences)
    with tempfile.TemporaryDirectory() as home:
        run = finetune_once(
            data, "ner", "full", Path(home), epochs=epochs, batch_size=batch_size, lr=NER_FULL_TRAIN["lr"]
        )
    test = run["metrics"]["test"]
    return {
        "variant": variant,
        "prepare": VARIANTS[variant],
        "pii_counts": pii.get("counts"),
        "test_entity_f1": test.get("entity_f1"),
        "test": test,
        "train_seconds": run["metrics"]["training"]["train_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-sentences", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=NER_FULL_TRAIN["batch_size"])
    parser.add_argument("--variants", default="old,new,raw")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(one(args.only, args.train_sentences, args.epochs, args.batch_size), default=str))
        return
    info = machine()
    argv = ["--train-sentences", str(args.train_sentences), "--epochs", str(args.epochs)]
    argv += ["--batch-size", str(args.batch_size)]
    runs = {}
    for variant in args.variants.split(","):
        proc = subprocess.run([sys.executable, __file__, "--only", variant, *argv], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        runs[variant] = json.loads(lines[-1]) if proc.returncode == 0 and lines else {"error": proc.stderr[-2000:]}
        print(variant, json.dumps({k: v for k, v in runs[variant].items() if k != "test"})[:600], flush=True)
    result = {
        "setup": {"base": "builtin:minilm", "train_sentences": args.train_sentences, "epochs": args.epochs,
                  "batch_size": args.batch_size, "evaluation": "raw CoNLL-2003 test (all 3,453 sentences)"},
        "test_entity_f1": {v: r.get("test_entity_f1") for v, r in runs.items()},
        "runs": runs,
    }  # fmt: skip
    write_result("ner_pii_defaults", result, info)
    print(result["test_entity_f1"])


if __name__ == "__main__":
    main()
