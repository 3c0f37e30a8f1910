"""Python entry points: ``leptonkit.finetune(...)``, ``leptonkit.sft(...)``, ``leptonkit.pretrain(...)`` and
:func:`run_recipe`, which runs a validated recipe (YAML or built here) with its stage's recipe. The CLI's ``finetune``
and ``pretrain`` commands and the SDK objects (``leptonkit.sdk``) call these same functions with the same keywords;
``overrides`` is a list of dotted ``KEY=VALUE`` strings in both.

Every recipe module exposes ``run(recipe, *, resume=None, registry=None) -> ModelVersion | None`` (``None`` on
ranks other than 0 under torchrun): classification and NER in ``recipes/finetune.py``, ``sft`` in
``recipes/sft.py``, ``pretrain`` in ``recipes/pretrain.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from leptonkit.data.infer import infer_task
from leptonkit.errors import InvalidInputError
from leptonkit.registry.store import ModelVersion, Registry
from leptonkit.train.distributed import init_distributed
from leptonkit.train.recipe import Recipe, TrainSettings, apply_overrides, validate_recipe
from leptonkit.train.recipes import finetune as finetune_recipe
from leptonkit.train.recipes import pretrain as pretrain_recipe
from leptonkit.train.recipes import sft as sft_recipe
from leptonkit.train.runs import stderr

STAGE_RUNNERS: dict[str, Callable[..., ModelVersion | None]] = {
    "classification": finetune_recipe.run,
    "ner": finetune_recipe.run,
    "sft": sft_recipe.run,
    "pretrain": pretrain_recipe.run,
}


def run_recipe(recipe: Recipe, *, resume: str | None = None, registry: Registry | None = None) -> ModelVersion | None:
    """Run a validated recipe with its stage's recipe module."""
    init_distributed()
    return STAGE_RUNNERS[recipe.stage](recipe, resume=resume, registry=registry)


def build_recipe(
    *,
    base: str,
    data: str | os.PathLike[str],
    task: str | None = None,
    method: str = "lora",
    name: str,
    overrides: list[str] | None = None,
    **options: Any,
) -> Recipe:
    """A recipe from keyword arguments: recipe keys (``merge=True``, ``lora={"r": 4}``) or training keys
    (``epochs=1``, ``lr=1e-4``), then dotted ``KEY=VALUE`` ``overrides`` (``["train.warmup_ratio=0.1"]``), validated
    like a YAML recipe. Without ``task`` the data's records decide it (``leptonkit.data.infer``)."""
    if task is None:
        task = infer_task(data)
    data_dict: dict[str, Any] = {"stage": task, "base": base, "data": os.fspath(data), "method": method, "name": name}
    train: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:  # an option left unset (the CLI's flags)
            continue
        if key in Recipe.model_fields and key != "train":
            data_dict[key] = value
        elif key in TrainSettings.model_fields:
            train[key] = value
        elif key == "train" and isinstance(value, dict):
            train |= value
        else:
            raise InvalidInputError(
                f"unknown fine-tuning option {key!r}",
                hint=f"recipe keys: {', '.join(Recipe.model_fields)}; "
                f"training keys: {', '.join(TrainSettings.model_fields)}",
            )
    data_dict["train"] = train
    return validate_recipe(apply_overrides(data_dict, overrides or []))


def finetune(
    *,
    base: str,
    data: str | os.PathLike[str],
    task: str | None = None,
    method: str = "lora",
    name: str,
    overrides: list[str] | None = None,
    resume: str | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> ModelVersion:
    """Fine-tune ``base`` on ``data`` for ``task`` (default: what the data's records are for) and register the
    result as ``name``; returns the new version. ``leptonkit finetune`` calls this with its flags."""
    recipe = build_recipe(base=base, data=data, task=task, method=method, name=name, overrides=overrides, **options)
    return run_recipe(recipe, resume=resume, registry=registry)


def sft(
    *,
    base: str,
    data: str | os.PathLike[str],
    name: str,
    method: str = "lora",
    overrides: list[str] | None = None,
    resume: str | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> ModelVersion:
    """Instruction-tune a causal LM ``base`` on chat data (messages or instruction/output pairs): :func:`finetune`
    with ``task="sft"``."""
    return finetune(
        base=base,
        data=data,
        task="sft",
        method=method,
        name=name,
        overrides=overrides,
        resume=resume,
        registry=registry,
        **options,
    )


def pretrain(
    data: str | os.PathLike[str] | list[str | os.PathLike[str]],
    *,
    name: str,
    preset: str = "tiny",
    base: str | None = None,
    objective: str = "clm",
    tokenizer: str | None = None,
    vocab_size: int = 8192,
    block_size: int | None = None,
    run_dir: str | None = None,
    overrides: list[str] | None = None,
    resume: str | None = None,
    registry: Registry | None = None,
    log: Callable[[str], None] = stderr,
    **train: Any,
) -> ModelVersion | None:
    """``leptonkit.pretrain(...)``: the ``pretrain`` recipe from arguments (``**train``: training keys such as
    ``max_steps=100, max_minutes=10, lr=1e-3``; ``overrides``: dotted ``KEY=VALUE`` strings), validated and run."""
    files = [os.fspath(p) for p in (data if isinstance(data, list | tuple) else [data])]
    if not files:
        raise InvalidInputError("pretraining needs at least one text file", param="data")
    recipe = {
        "stage": "pretrain",
        "name": name,
        "base": base,
        "data": files[0],
        "method": "full",
        "run_dir": run_dir,
        "pretrain": {
            "objective": objective,
            "preset": preset,
            "tokenizer": tokenizer,
            "vocab_size": vocab_size,
            "block_size": block_size,
            "extra_data": files[1:],
        },
        "train": {k: v for k, v in train.items() if v is not None},
    }
    validated = validate_recipe(apply_overrides(recipe, overrides or []))
    init_distributed()  # under torchrun (pretrain --nproc/--nnodes): join the process group, as run_recipe does
    return pretrain_recipe.run(validated, resume=resume, registry=registry, log=log)
