"""Fine-tuning recipe for sequence classification and token classification (NER), read top to bottom.

data -> labels -> base model + head -> method (full, freeze, LoRA, IA3, prefix) -> tokenised features ->
length-grouped dynamic-padding loaders -> the shared loop (with evaluation each epoch) -> test evaluation ->
registry (a full model, an adapter linked to its base, or merged weights).
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from leptonkit.errors import InvalidInputError
from leptonkit.registry.loading import LABELS_FILE, LoadedModel
from leptonkit.registry.store import ModelVersion, Registry
from leptonkit.train import datasets
from leptonkit.train.adversarial import EmbeddingAttack
from leptonkit.train.batching import LengthGroupedBatchSampler
from leptonkit.train.distributed import is_main, rank, world_size
from leptonkit.train.evaluate import PRIMARY_METRIC, evaluate_records
from leptonkit.train.features import IGNORE, encode_classification, encode_ner
from leptonkit.train.loop import LoopResult, train_loop
from leptonkit.train.methods import apply_method, trainable_parameters
from leptonkit.train.recipe import Recipe
from leptonkit.train.runs import run_directory
from leptonkit.versions import device_description

FINAL = "final"


@dataclass(frozen=True)
class TaskSpec:
    auto_class: str
    encode: Any
    collator: str


TASKS = {
    "classification": TaskSpec("AutoModelForSequenceClassification", encode_classification, "DataCollatorWithPadding"),
    "ner": TaskSpec("AutoModelForTokenClassification", encode_ner, "DataCollatorForTokenClassification"),
}


def run(recipe: Recipe, *, resume: str | None = None, registry: Registry | None = None) -> ModelVersion | None:
    """Train and register; returns the registered version (``None`` on ranks other than 0)."""
    import transformers

    task = recipe.stage
    spec = TASKS[task]
    registry = registry or Registry()
    run_dir = run_directory(recipe, resume)

    # 1. data and labels
    base_path = _base_folder(registry, recipe.base)
    folder = datasets.resolve(recipe.data, task, run_dir) if is_main() else None
    folder = _broadcast(folder)
    data = datasets.load(folder, task, need=("train", "valid"))
    labels = datasets.labels_of(data, task)
    label2id = {name: i for i, name in enumerate(labels)}

    # 2. model, head and method
    transformers.logging.set_verbosity_error()  # "newly initialized head" is expected here
    transformers.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(base_path)
    torch.manual_seed(recipe.train.seed)
    base_model = getattr(transformers, spec.auto_class).from_pretrained(
        base_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    model = apply_method(base_model, recipe)
    trainable, total = trainable_parameters(model)

    # 3. features and loaders
    settings = recipe.train
    features = spec.encode(data.splits["train"], tokenizer, label2id, settings.max_length)
    collator = getattr(transformers, spec.collator)(tokenizer)
    sampler = LengthGroupedBatchSampler(
        [len(f["input_ids"]) for f in features],
        settings.batch_size,
        group_by_length=settings.group_by_length,
        seed=settings.seed,
        rank=rank(),
        world_size=world_size(),
    )
    loader = torch.utils.data.DataLoader(features, batch_sampler=sampler, collate_fn=collator)

    def evaluate(trained: torch.nn.Module) -> dict[str, float]:
        loaded = LoadedModel(trained, tokenizer, task, labels, run_dir, None)
        return evaluate_records(loaded, data.splits["valid"], task)

    # 4. train
    result = train_loop(
        model,
        loader,
        settings,
        run_dir,
        evaluate=evaluate,
        compute_loss=_loss_function(recipe, data, labels, task),
        adversary=EmbeddingAttack(recipe.adversarial) if recipe.adversarial else None,
        resume=resume,
        primary_metric=PRIMARY_METRIC[task],
        resume_hint="run the same command again with --resume {checkpoint}",
    )

    # 5. test and register (rank 0)
    if not is_main():
        return None
    model.eval()
    test = (
        evaluate_records(LoadedModel(model, tokenizer, task, labels, run_dir, None), data.splits["test"], task)
        if data.splits.get("test")
        else None
    )
    truncated = sum(len(f["input_ids"]) >= settings.max_length for f in features)
    metrics = training_metrics(result, test, trainable, total, truncated_rows=truncated)
    (run_dir / "result.json").write_text(json.dumps(metrics, indent=2))
    return _register(registry, recipe, model, tokenizer, labels, run_dir, metrics, data)


def _base_folder(registry: Registry, base: str | None) -> Path:
    from leptonkit.registry.artifacts import folder_kind

    path = registry.resolve(base or "")
    if folder_kind(path) != "model":
        raise InvalidInputError(f"base {base!r} is an adapter", hint="fine-tune from a full model, or --merge it first")
    return path


def _broadcast(value: Any) -> Any:
    """Rank 0's value on every rank (data is prepared once)."""
    if world_size() == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _loss_function(recipe: Recipe, data: datasets.Dataset, labels: list[str], task: str) -> Any:
    """Cross-entropy with optional label smoothing and balanced class weights (ignoring non-first sub-words)."""
    settings = recipe.train
    if not settings.label_smoothing and settings.class_weights == "none":
        return lambda model, batch: model(**batch).loss
    weight = None
    if settings.class_weights == "balanced":
        counts = torch.zeros(len(labels))
        index = {name: i for i, name in enumerate(labels)}
        for record in data.splits["train"]:
            for label in record["tags"] if task == "ner" else [str(record["label"])]:
                counts[index[label]] += 1
        weight = counts.sum() / (len(labels) * counts.clamp(min=1))
    criterion = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=settings.label_smoothing, ignore_index=IGNORE)

    def loss(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        criterion.to(logits.device)
        return criterion(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1))

    return loss


def training_metrics(result: LoopResult, test: dict | None, trainable: int, total: int, **extra: Any) -> dict[str, Any]:
    """``{"valid": best validation metrics, "test": ..., "training": status, time, throughput, memory, ...}``;
    ``extra`` adds to ``training`` (e.g. ``truncated_rows``: training rows cut at ``train.max_length``)."""
    best = next((h for h in result.history if h["step"] == result.progress.best_step), None)
    last = result.history[-1] if result.history else None
    valid = {k: v for k, v in (best or last or {}).items() if k not in ("step", "epoch")}
    out: dict[str, Any] = {"valid": valid}
    if test is not None:
        out["test"] = test
    out["training"] = {
        "status": result.status,
        "steps": result.progress.step,
        "epochs": result.progress.epoch,
        "best_step": result.progress.best_step,
        "train_seconds": round(result.progress.train_seconds, 2),
        "samples_per_second": round(result.samples_per_second * world_size(), 2),
        "precision": result.precision,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "peak_memory_mb": result.peak_memory_mb,
        "memory_at_start_mb": result.memory_at_start_mb,
        # what training added on top of the loaded model: activations, gradients, optimiser state, caches
        "training_memory_mb": (
            round(result.peak_memory_mb - result.memory_at_start_mb, 1)
            if result.peak_memory_mb is not None and result.memory_at_start_mb is not None
            else None
        ),
        "processes": world_size(),
        **extra,
    }
    return out


def _register(
    registry: Registry,
    recipe: Recipe,
    model: Any,
    tokenizer: Any,
    labels: list[str],
    run_dir: Path,
    metrics: dict[str, Any],
    data: datasets.Dataset,
) -> ModelVersion:
    """Save the final artifact into the run folder (loadable with plain transformers/peft), then register it."""
    final = run_dir / FINAL
    is_adapter = recipe.method in ("lora", "ia3", "prefix")
    base = None
    if is_adapter and recipe.merge:
        if recipe.method == "prefix":
            raise InvalidInputError("prefix tuning cannot be merged into the weights", hint="drop --merge")
        model = model.merge_and_unload()
    elif is_adapter:
        base = recipe.base
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    if base is not None:
        (final / LABELS_FILE).write_text(json.dumps(labels))
    lineage = {
        "recipe": recipe.model_dump(mode="json"),
        # the manifest says how raw input became these records (a raw file is prepared on the fly, into the run)
        "data": {"path": str(data.folder), "content_hash": data.content_hash, "manifest": data.manifest},
        "run_dir": str(run_dir),
        "hardware": {"device": device_description(), "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    if base is None and recipe.base:
        lineage["base_model"] = recipe.base
    return registry.register(
        final, name=recipe.name, task=recipe.stage, base=base, metrics=metrics, lineage=lineage, tags=recipe.tags
    )
