"""``leptonkit eval --perturb``: the metric on the clean split and on each perturbed copy, and how far it drops.

The model loads once and the split is read once (with the fine-tuning stage's own dataset and evaluator code,
``leptonkit.train.datasets`` / ``leptonkit.train.evaluate``); each perturbed copy is then scored the same way. The
clean metrics are stored on the version under the split name, as plain ``leptonkit eval`` does, and the perturbed
ones under ``"<split>_perturbed"``. The perturbations themselves are :mod:`leptonkit.robustness` (a layer below).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from leptonkit.robustness.perturb import DEFAULT_RATE, check_rate, perturb_records


def metric_drops(clean: dict[str, float], perturbed: dict[str, float]) -> dict[str, float]:
    """Clean minus perturbed, per metric both report (positive: the perturbation hurt)."""
    return {name: clean[name] - perturbed[name] for name in clean if name in perturbed}


def evaluate_perturbed(
    loaded: Any,
    records: list[dict],
    task: str,
    perturbations: list[str],
    *,
    rate: float = DEFAULT_RATE,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"metrics": clean, "perturbed": {kind: {"metrics", "drop", "changed"}}}`` for an already-loaded model."""
    from leptonkit.train.evaluate import evaluate_records

    check_rate(rate)
    clean = evaluate_records(loaded, records, task)
    perturbed: dict[str, Any] = {}
    for kind in perturbations:
        copies = perturb_records(records, kind, rate=rate, seed=seed)
        metrics = evaluate_records(loaded, copies, task)
        perturbed[kind] = {
            "metrics": metrics,
            "drop": metric_drops(clean, metrics),
            "changed": sum(a != b for a, b in zip(records, copies, strict=True)),
        }
    return {"metrics": clean, "perturbed": perturbed}


def evaluate_robustness(
    ref: str,
    data: str | os.PathLike[str],
    perturbations: list[str],
    *,
    rate: float = DEFAULT_RATE,
    split: str = "test",
    task: str | None = None,
    seed: int = 0,
    registry: Any = None,
) -> dict[str, Any]:
    """Evaluate ``ref`` on ``data``'s split, clean and perturbed: ``{"task", "split", "n", "rate", "metrics",
    "perturbed": {kind: {"metrics", "drop", "changed"}}}``."""
    from leptonkit.registry.loading import load_model
    from leptonkit.registry.store import Registry
    from leptonkit.train import datasets
    from leptonkit.train.evaluate import DATA_TASK, eval_task

    check_rate(rate)
    registry = registry or Registry()
    loaded = load_model(ref, registry=registry)
    task = eval_task(task or loaded.task)
    with tempfile.TemporaryDirectory() as tmp:
        folder = datasets.resolve(data, DATA_TASK.get(task, task), Path(tmp))
        records = datasets.load(folder, DATA_TASK.get(task, task), need=(split,)).splits[split]
    report = evaluate_perturbed(loaded, records, task, perturbations, rate=rate, seed=seed)
    if loaded.version is not None:
        stored = {kind: result["metrics"] for kind, result in report["perturbed"].items()}
        registry.log_metrics(
            loaded.version.ref, {split: report["metrics"], f"{split}_perturbed": stored | {"rate": rate}}
        )
    return {"task": task, "split": split, "n": len(records), "rate": rate} | report
