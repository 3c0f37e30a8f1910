"""Evaluation of a model on records of the data contract, dispatched by task.

``EVALUATORS`` maps a task to its function, imported explicitly; each takes ``(loaded, records)`` and returns the
metric dict. Classification reports accuracy and macro-F1 (scikit-learn), NER entity-level precision/recall/F1
(seqeval), ``"lm"`` loss, perplexity and bits per character. Another task adds its line to ``EVALUATORS``.
``leptonkit eval --perturb`` reuses these.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leptonkit.errors import InvalidInputError
from leptonkit.registry.loading import LoadedModel
from leptonkit.train.lm_eval import evaluate_text_records

Evaluator = Callable[[LoadedModel, list[dict]], dict[str, float]]

# the data-contract task whose records each evaluation task reads
DATA_TASK = {"classification": "classification", "ner": "ner", "lm": "text"}
PRIMARY_METRIC = {"classification": "macro_f1", "ner": "entity_f1", "lm": "loss"}


def evaluate_classification(loaded: LoadedModel, records: list[dict]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    from leptonkit.inference import classify

    predicted = [p["label"] for p in classify(loaded, [r["text"] for r in records])]
    truth = [str(r["label"]) for r in records]
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
    }


def evaluate_ner(loaded: LoadedModel, records: list[dict]) -> dict[str, float]:
    from seqeval.metrics import f1_score, precision_score, recall_score

    from leptonkit.inference import tag_words

    predicted = tag_words(loaded, [r["tokens"] for r in records])
    truth = [r["tags"] for r in records]
    return {
        "entity_f1": float(f1_score(truth, predicted, zero_division=0)),
        "precision": float(precision_score(truth, predicted, zero_division=0)),
        "recall": float(recall_score(truth, predicted, zero_division=0)),
    }


EVALUATORS: dict[str, Evaluator] = {
    "classification": evaluate_classification,
    "ner": evaluate_ner,
    "lm": evaluate_text_records,
}


def evaluate_records(loaded: LoadedModel, records: list[dict], task: str) -> dict[str, float]:
    evaluator = EVALUATORS.get(task)
    if evaluator is None:
        raise InvalidInputError(f"no evaluation for task {task!r}", hint=f"evaluable tasks: {', '.join(EVALUATORS)}")
    return evaluator(loaded, records)


def eval_task(model_task: str | None) -> str:
    """The evaluation task of a model task (``generation`` models are evaluated as language models)."""
    task = {"generation": "lm"}.get(model_task or "", model_task)
    if task not in EVALUATORS and task not in DATA_TASK:
        raise InvalidInputError(
            f"cannot evaluate a model of task {model_task!r}", hint="pass --task classification or --task ner"
        )
    return task or ""


def evaluate(
    ref: str,
    data: str | os.PathLike[str],
    *,
    split: str = "test",
    task: str | None = None,
    registry: Any = None,
    work_dir: Path | None = None,
) -> dict[str, Any]:
    """Evaluate a registered version (or folder) on one split: ``{"task", "split", "n", "metrics"}``.

    The metrics are also merged into the version's stored metrics under the split name.
    """
    from leptonkit.registry.loading import load_model
    from leptonkit.registry.store import Registry

    registry = registry or Registry()
    loaded = load_model(ref, registry=registry)
    task = eval_task(task or loaded.task)
    records = load_records(data, task, split, work_dir=work_dir)
    metrics = evaluate_records(loaded, records, task)
    if loaded.version is not None:
        registry.log_metrics(loaded.version.ref, {split: metrics})
    return {"task": task, "split": split, "n": len(records), "metrics": metrics}


def load_records(data: str | os.PathLike[str], task: str, split: str, *, work_dir: Path | None = None) -> list[dict]:
    """The records of one split of ``data`` for evaluation task ``task``; for ``lm`` a raw text file is read whole,
    as written."""
    import tempfile

    from leptonkit.train import datasets

    if task == "lm" and Path(data).expanduser().is_file():
        from leptonkit.train.corpus import load_documents

        return [{"text": doc} for doc in load_documents([data])]
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        folder = datasets.resolve(data, DATA_TASK.get(task, task), Path(tmp))
        dataset = datasets.load(folder, DATA_TASK.get(task, task), need=(split,))
    return dataset.splits[split]
