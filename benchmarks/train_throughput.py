"""Training throughput: leptonkit's loop against the plain Hugging Face Trainer, same data, model and batch size.

Both train all-MiniLM-L6-v2 with a fresh classification head on the same tokenised SST-2 rows (no padding at
tokenisation), batch 32, one epoch, AdamW with linear decay. The Trainer uses dynamic padding and length grouping
(``train_sampling_strategy="group_by_length"``), its fastest documented CPU setup without mixed precision;
leptonkit uses its defaults (length-grouped batches, bf16 autocast where the CPU has it). Runs alternate
(Trainer, leptonkit, Trainer, ...) so that load from other processes on a shared machine hits both alike; the
result file reports every run and the ratio of the medians. Dev accuracy is measured after each run, outside the
timed part.

    .venv/bin/python benchmarks/train_throughput.py --rows 8000 --repeats 1
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


def run_hf_trainer(features: list[dict], tokenizer: Any, batch: int, seed: int) -> tuple[float, Any]:
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
    parser.add_argument("--repeats", type=int, default=1)
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
    runs: dict[str, list[dict]] = {"hf_trainer_dynamic_padding": [], "leptonkit_auto": [], "leptonkit_fp32": []}
    for repeat in range(args.repeats):
        for name, fn in (
            ("hf_trainer_dynamic_padding", lambda: run_hf_trainer(features, tokenizer, args.batch_size, args.seed)),
            ("leptonkit_auto", lambda: run_leptonkit(features, tokenizer, args.batch_size, args.seed, "auto")),
            ("leptonkit_fp32", lambda: run_leptonkit(features, tokenizer, args.batch_size, args.seed, "fp32")),
        ):
            load = os.getloadavg()[0]
            speed, model = fn()
            accuracy = dev_accuracy(model, tokenizer, dev)
            runs[name].append({"samples_per_second": round(speed, 2), "dev_accuracy": accuracy, "load_1min": load})
            print(f"repeat {repeat} {name}: {speed:.1f} samples/s, dev accuracy {accuracy:.3f}, load {load:.1f}")
    medians = {name: statistics.median(r["samples_per_second"] for r in rs) for name, rs in runs.items()}
    result = {
        "benchmark": "train_throughput",
        "setup": {
            "model": "builtin:minilm (all-MiniLM-L6-v2) + new 2-class head",
            "data": "SST-2 train sample",
            "rows": len(features),
            "batch_size": args.batch_size,
            "epochs": 1,
            "dev_rows": len(dev),
            "max_length": MAX_LENGTH,
        },
        "machine": info,
        "runs": runs,
        "median_samples_per_second": medians,
        "speedup_vs_hf_trainer": round(medians["leptonkit_auto"] / medians["hf_trainer_dynamic_padding"], 3),
        "speedup_fp32_vs_hf_trainer": round(medians["leptonkit_fp32"] / medians["hf_trainer_dynamic_padding"], 3),
        "target": ">= 1.3x the HF Trainer with dynamic padding",
    }
    write_result("train_throughput", result)


if __name__ == "__main__":
    main()
