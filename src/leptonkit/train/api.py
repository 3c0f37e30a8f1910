"""Python entry points: ``leptonkit.finetune(...)`` and :func:`run_recipe`, which dispatches a recipe by stage.

Every stage module exposes ``run(recipe, *, resume=None, registry=None) -> ModelVersion | None`` (``None`` on
ranks other than 0 under torchrun): classification and NER live in ``recipes/finetune.py``; ``sft`` and
``pretrain`` in the pretraining engineer's ``recipes/sft.py`` and ``recipes/pretrain.py``.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

from leptonkit.errors import InvalidInputError
from leptonkit.registry.store import ModelVersion, Registry
from leptonkit.train.recipe import Recipe, TrainSettings, validate_recipe

STAGE_RUNNERS = {
    "classification": "leptonkit.train.recipes.finetune",
    "ner": "leptonkit.train.recipes.finetune",
    "sft": "leptonkit.train.recipes.sft",
    "pretrain": "leptonkit.train.recipes.pretrain",
}


def run_recipe(recipe: Recipe, *, resume: str | None = None, registry: Registry | None = None) -> ModelVersion | None:
    """Run a validated recipe with its stage's recipe module."""
    from leptonkit.train.loop import init_distributed

    init_distributed()
    return import_module(STAGE_RUNNERS[recipe.stage]).run(recipe, resume=resume, registry=registry)


def build_recipe(
    *, base: str, data: str | os.PathLike[str], task: str, method: str = "lora", name: str, **overrides: Any
) -> Recipe:
    """A recipe from keyword arguments: recipe keys (``merge=True``, ``lora={"r": 4}``) or training keys
    (``epochs=1``, ``lr=1e-4``), validated like a YAML recipe."""
    data_dict: dict[str, Any] = {"stage": task, "base": base, "data": os.fspath(data), "method": method, "name": name}
    train: dict[str, Any] = {}
    for key, value in overrides.items():
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
    return validate_recipe(data_dict)


def finetune(
    *,
    base: str,
    data: str | os.PathLike[str],
    task: str,
    method: str = "lora",
    name: str,
    resume: str | None = None,
    registry: Registry | None = None,
    **overrides: Any,
) -> ModelVersion:
    """Fine-tune ``base`` on ``data`` for ``task`` and register the result as ``name``; returns the new version."""
    recipe = build_recipe(base=base, data=data, task=task, method=method, name=name, **overrides)
    return run_recipe(recipe, resume=resume, registry=registry)
