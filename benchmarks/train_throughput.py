"""Training throughput: leptonkit's loop against the plain Hugging Face Trainer, same data, model and batch size.

Both train all-MiniLM-L6-v2 with a fresh classification head on the same tokenised SST-2 rows (no padding at
tokenisation), batch 32, one epoch, AdamW with linear decay, at the same precision. The Trainer runs in its fastest
documented CPU setup: ``bf16=True`` (bf16 autocast), dynamic padding (``DataCollatorWithPadding``) and length grouping
(``train_sampling_strategy="group_by_length"``); leptonkit runs its loop with length-grouped batches and bf16 autocast,
and what its loop does on every CPU run: a BERT-family classifier's last layer computes only the first token's row, the
one its head reads (``leptonkit.train.first_token``: the same logits and gradients); self-attention projects query,
key and value in one matmul (``leptonkit.train.fused_qkv``: the same outputs, input gradients rounded once); dropout
draws hashed masks on every core (``leptonkit.train.hashed_dropout``: same rate, different masks); glibc keeps freed
memory for the next step (``leptonkit.train.allocator``); the word embeddings' gradient stays in one buffer written
by rows (``leptonkit.train.embedding_rows``: the same gradient); clipping is folded into the fused AdamW step (the
same update). ``--precisions bf16,fp32`` adds the same pair in float32. Runs alternate (Trainer, leptonkit, Trainer,
...) so that load from other processes hits both alike. Dev accuracy is measured after each run, outside the timed
part. On a CPU without native bf16 matmuls (no AVX-512 BF16 or AMX) bf16 autocast is emulated and several times slower
than float32 for both, so there the default pair is float32, the fastest setup of both.

Estimator, fixed before the run (``ESTIMATOR``): per precision, the median over repeats of the per-repeat ratio
leptonkit samples/s / Trainer samples/s (the two runs of a repeat are back to back). The target is >= 1.3x, judged
in bf16 when it ran, else in float32.

    .venv/bin/python benchmarks/train_throughput.py --rows 8000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import torch

from finetune_common import SHARED, machine, write_result

MAX_LENGTH = 128
ESTIMATOR = "median over repeats of (leptonkit samples/s / HF Trainer samples/s), runs of a repeat back to back"
TARGET = 1.3


def load_rows(path: Any, limit: int | None, seed: int = 0) -> list[dict]:
    import csv
    import random

    with open(path, encoding="utf-8") as handle:
        rows = [
            {"text": r["sentence"].strip(), "label": r["label"]}
            for r in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]
    return random.Random(seed).sample(rows, limit) if limit and limit < len(rows) else rows


def fresh_model(seed: int) -> Any:
    from transformers import AutoModelForSequenceClassification

    from leptonkit.registry.store import builtin_source

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(
        builtin_source("builtin:minilm")[0], num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1}
    )


def dev_accuracy(model: Any, tokenizer: Any, dev: list[dict]) -> float:
    from leptonkit.registry.loading import LoadedModel
    from leptonkit.train.evaluate import evaluate_classification

    model.eval()
    return evaluate_classification(LoadedModel(model, tokenizer, "classification", ["0", "1"], None, None), dev)[
        "accuracy"
    ]


def run_hf_trainer(features: list[dict], tokenizer: Any, batch: int, seed: int, precision: str) -> tuple[float, Any]:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    model = fresh_model(seed)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=batch,
            num_train_epochs=1,
            learning_rate=5e-5,
            weight_decay=0.01,
            warmup_steps=0.06,
            train_sampling_strategy="group_by_length",
            save_strategy="no",
            report_to="none",
            logging_steps=50,
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            bf16=precision == "bf16",
            seed=seed,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=features, data_collator=DataCollatorWithPadding(tokenizer)
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return len(features) / seconds, model


def run_leptonkit(features: list[dict], tokenizer: Any, batch: int, seed: int, precision: str) -> tuple[float, Any]:
    from transformers import DataCollatorWithPadding

    from leptonkit.train.batching import LengthGroupedBatchSampler
    from leptonkit.train.loop import train_loop
    from leptonkit.train.recipe import TrainSettings

    model = fresh_model(seed)
    sampler = LengthGroupedBatchSampler([len(f["input_ids"]) for f in features], batch, seed=seed)
    loader = torch.utils.data.DataLoader(features, batch_sampler=sampler, collate_fn=DataCollatorWithPadding(tokenizer))
    settings = TrainSettings(
        epochs=1, batch_size=batch, lr=5e-5, precision=precision, checkpoint_every=None, early_stopping=None, seed=seed
    )
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        train_loop(model, loader, settings, run_dir)
        seconds = time.perf_counter() - start  # wall clock including the final checkpoint, like the Trainer's
    return len(features) / seconds, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--precisions",
        default=None,
        help="Comma-separated: bf16 and/or fp32. Default: bf16 where the CPU has native bf16 matmuls, else fp32.",
    )
    parser.add_argument("--dev-rows", type=int, default=872)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from transformers import AutoTokenizer
    from transformers.utils import logging

    from leptonkit.registry.store import builtin_source

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    info = machine()
    tokenizer = AutoTokenizer.from_pretrained(builtin_source("builtin:minilm")[0])
    rows = load_rows(SHARED / "sst2" / "train.tsv", args.rows, args.seed)
    dev = load_rows(SHARED / "sst2" / "dev.tsv", args.dev_rows, args.seed)
    encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=MAX_LENGTH)
    features = [
        {"input_ids": ids, "attention_mask": mask, "labels": int(r["label"])}
        for ids, mask, r in zip(encoded["input_ids"], encoded["attention_mask"], rows, strict=True)
    ]
    from leptonkit.versions import cpu_supports_bf16

    precisions = (args.precisions or ("bf16" if cpu_supports_bf16() else "fp32")).split(",")
    if not set(precisions) <= {"bf16", "fp32"}:
        raise SystemExit(f"--precisions {args.precisions}: give bf16, fp32 or both")
    runners = {"hf_trainer": run_hf_trainer, "leptonkit": run_leptonkit}
    runs: dict[str, list[dict]] = {f"{name}_{p}": [] for p in precisions for name in runners}
    for repeat in range(args.repeats):
        for precision in precisions:
            for name, runner in runners.items():
                load = os.getloadavg()[0]
                speed, model = runner(features, tokenizer, args.batch_size, args.seed, precision)
                accuracy = dev_accuracy(model, tokenizer, dev)
                row = {"samples_per_second": round(speed, 2), "dev_accuracy": accuracy, "load_1min": load}
                runs[f"{name}_{precision}"].append(row)
                print(f"repeat {repeat} {name} {precision}: {speed:.1f} samples/s, dev accuracy {accuracy:.3f}")
    ratios = {
        p: [
            lk["samples_per_second"] / hf["samples_per_second"]
            for lk, hf in zip(runs[f"leptonkit_{p}"], runs[f"hf_trainer_{p}"], strict=True)
        ]
        for p in precisions
    }
    from leptonkit.train.allocator import glibc
    from leptonkit.train.distributed import pick_device
    from leptonkit.train.embedding_rows import row_gradients
    from leptonkit.train.first_token import last_layer
    from leptonkit.train.fused_qkv import fused_modules
    from leptonkit.train.loop import build_optimizer
    from leptonkit.train.recipe import TrainSettings

    model, on_cpu = fresh_model(args.seed), pick_device().type == "cpu"  # the conditions train_loop applies
    with row_gradients(model, on_cpu) as rows:
        by_rows = rows is not None
    result = {
        "benchmark": "train_throughput",
        "leptonkit_loop": {
            "first_token_rows": last_layer(model) is not None,
            "fused_qkv_projections": fused_modules(model),
            "embedding_gradient_by_rows": by_rows,
            "hashed_dropout": on_cpu,
            "keeps_freed_memory": on_cpu and glibc() is not None,
            "clipping_in_fused_step": bool(build_optimizer(model, TrainSettings()).defaults["fused"]),
        },
        "setup": {
            "model": "builtin:minilm (all-MiniLM-L6-v2) + new 2-class head",
            "data": "SST-2 train sample",
            "rows": len(features),
            "batch_size": args.batch_size,
            "epochs": 1,
            "dev_rows": len(dev),
            "max_length": MAX_LENGTH,
        },
        "estimator": ESTIMATOR,
        "runs": runs,
        "ratios_per_repeat": {p: [round(r, 3) for r in rs] for p, rs in ratios.items()},
        "speedup_vs_hf_trainer": {p: round(statistics.median(rs), 3) for p, rs in ratios.items()},
        "target": f">= {TARGET}x the HF Trainer (bf16, dynamic padding, length grouping) in bf16",
    }
    judged = "bf16" if "bf16" in ratios else precisions[0]
    result["judged_precision"] = judged
    result["repeats_meeting_target"] = sum(r >= TARGET for r in ratios[judged])
    result["meets_target"] = statistics.median(ratios[judged]) >= TARGET
    write_result("train_throughput", result, info)


if __name__ == "__main__":
    main()
