"""``leptonkit train | finetune | eval | predict``: fine-tune, evaluate and query task models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from leptonkit.cli.launch import (
    FSDP_OPTION,
    MASTER_ADDR_OPTION,
    MASTER_PORT_OPTION,
    NNODES_OPTION,
    NODE_RANK_OPTION,
    NPROC_OPTION,
    Launch,
    relaunch_if_distributed,
)
from leptonkit.cli.output import JSON_OPTION, console, print_json, print_table
from leptonkit.errors import InvalidInputError

RESUME_OPTION = typer.Option(None, "--resume", help="A run folder or checkpoint folder to continue from.")


def _report(version: Any, json_out: bool) -> None:
    if version is None:  # ranks other than 0 under torchrun
        return
    metrics = version.metrics
    if json_out:
        print_json(version.to_dict(detail=True))
        return
    console.print(f"registered [bold]{version.ref}[/] ({version.kind}, task {version.task}) at {version.path}")
    rows = [
        [split, key, f"{value:.4f}"] for split in ("valid", "test") for key, value in metrics.get(split, {}).items()
    ]
    training = metrics.get("training", {})
    rows += [
        ["training", key, str(training[key])] for key in ("status", "steps", "train_seconds", "samples_per_second")
    ]
    print_table(None, ["split", "metric", "value"], rows)
    console.print(f"run folder: {version.lineage.get('run_dir')}")


def train(
    recipe: Path = typer.Argument(..., help="A YAML recipe (stage, base, data, method, train: ...)."),
    overrides: list[str] = typer.Argument(None, help="KEY=VALUE overrides, dotted for sections: train.lr=1e-4"),
    resume: str | None = RESUME_OPTION,
    nproc: int = NPROC_OPTION,
    nnodes: int = NNODES_OPTION,
    node_rank: int = NODE_RANK_OPTION,
    master_addr: str | None = MASTER_ADDR_OPTION,
    master_port: int | None = MASTER_PORT_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Train from a recipe; the result is registered in the model registry."""
    from leptonkit.train.api import run_recipe
    from leptonkit.train.recipe import load_recipe

    loaded = load_recipe(recipe, overrides or [])  # validated before anything else, also before relaunching
    relaunch_if_distributed(Launch(nproc, nnodes, node_rank, master_addr, master_port))
    _report(run_recipe(loaded, resume=resume), json_out)


def finetune(
    base: str = typer.Option(..., "--base", help="Model to start from: a registry ref, a folder or builtin:minilm."),
    data: str = typer.Option(..., "--data", help="A prepared folder, a raw file, or a folder of raw split files."),
    task: str | None = typer.Option(
        None, "--task", help="classification, ner or sft (default: what the data's records are for)."
    ),
    method: str = typer.Option("lora", "--method", help="full, lora, ia3, prefix or freeze."),
    name: str = typer.Option(..., "--name", help="Registry name of the result."),
    epochs: float | None = typer.Option(None, "--epochs"),
    lr: float | None = typer.Option(None, "--lr"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop cleanly after this many optimiser steps."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Stop cleanly after this many minutes."),
    merge: bool = typer.Option(False, "--merge", help="Register merged weights instead of an adapter."),
    settings: list[str] = typer.Option([], "--set", help="Any recipe key: --set train.warmup_ratio=0.1 (repeatable)."),
    resume: str | None = RESUME_OPTION,
    nproc: int = NPROC_OPTION,
    nnodes: int = NNODES_OPTION,
    node_rank: int = NODE_RANK_OPTION,
    master_addr: str | None = MASTER_ADDR_OPTION,
    master_port: int | None = MASTER_PORT_OPTION,
    fsdp: bool = FSDP_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Fine-tune a base model for classification, NER or SFT (short form of `leptonkit train`)."""
    from leptonkit.train.api import build_recipe, run_recipe

    given = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "max_steps": max_steps, "max_minutes": max_minutes}
    given["fsdp"] = fsdp or None  # unset: the recipe's own train.fsdp
    # the function leptonkit.finetune and FineTuneModel.train build their recipe with, under the same keywords
    loaded = build_recipe(
        base=base, data=data, task=task, method=method, name=name, overrides=settings, merge=merge, **given
    )
    relaunch_if_distributed(Launch(nproc, nnodes, node_rank, master_addr, master_port))
    _report(run_recipe(loaded, resume=resume), json_out)


def eval_(
    ref: str = typer.Argument(..., help="A registered version (NAME, NAME:VERSION, NAME@ALIAS) or a folder."),
    data: str = typer.Option(..., "--data", help="A prepared folder or a raw file."),
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    task: str | None = typer.Option(None, "--task", help="Override the task recorded with the model."),
    perturb: str | None = typer.Option(
        None, "--perturb", help="Also evaluate perturbed copies: typos,case,punctuation,synonyms,pii."
    ),
    rate: float = typer.Option(0.1, "--rate", help="With --perturb: the probability that each word is perturbed."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Evaluate a model on one split of a dataset; the metrics are stored on the version too."""
    from leptonkit.train.evaluate import evaluate

    if split not in ("train", "valid", "test"):
        raise InvalidInputError(f"unknown split {split!r}", hint="use train, valid or test", param="split")
    if perturb is not None:  # robustness (leptonkit.robustness): clean metrics, then each perturbed copy's drop
        from leptonkit.cli.robustness import eval_perturbed

        eval_perturbed(ref, data, perturb, rate=rate, split=split, task=task, json_out=json_out)
        return
    result = evaluate(ref, data, split=split, task=task)
    if json_out:
        print_json(result)
        return
    print_table(
        f"{ref} on {split} ({result['n']} rows, {result['task']})",
        ["metric", "value"],
        [[k, f"{v:.4f}"] for k, v in result["metrics"].items()],
    )


def predict(
    ref: str = typer.Argument(..., help="A registered version or a folder."),
    texts: list[str] = typer.Argument(..., help="One or more texts."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Label texts (classification) or find entities with character offsets (NER)."""
    from leptonkit.inference import classify, extract_entities
    from leptonkit.registry.loading import load_model

    loaded = load_model(ref)
    if loaded.task == "classification":
        results: list[dict] = [{"text": t} | r for t, r in zip(texts, classify(loaded, texts), strict=True)]
        rows = [[r["text"], r["label"], f"{r['score']:.4f}"] for r in results]
        columns = ["text", "label", "score"]
    elif loaded.task == "ner":
        results = [{"text": t, "entities": e} for t, e in zip(texts, extract_entities(loaded, texts), strict=True)]
        rows = [
            [r["text"] if i == 0 else "", e["type"], e["text"], f"{e['start']}-{e['end']}", f"{e['score']:.4f}"]
            for r in results
            for i, e in enumerate(r["entities"])
        ]
        columns = ["text", "type", "entity", "span", "score"]
    else:
        raise InvalidInputError(
            f"{ref} is a {loaded.task or 'task-less'} model", hint="predict needs a classification or NER model"
        )
    if json_out:
        print_json(results)
    else:
        print_table(None, columns, rows)
