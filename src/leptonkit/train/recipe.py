"""One recipe schema for every training stage, validated before any work starts.

A recipe is a YAML mapping (``leptonkit train RECIPE.yaml key=value ...``)::

    stage: classification          # classification | ner | sft | pretrain
    name: sentiment                # registry name of the result
    base: builtin:minilm           # model to start from (a registry ref, a folder, builtin:minilm)
    data: data/sst2                # a prepared folder (train/valid/test.jsonl + manifest.json) or a raw file
    method: lora                   # full | lora | ia3 | prefix | freeze
    lora: {r: 8, alpha: 16, dropout: 0.1, target_modules: [query, value]}
    train: {epochs: 3, batch_size: 32, lr: 5.0e-5, scheduler: linear, precision: auto, ...}
    adversarial: {method: fgm, epsilon: 1.0}

Every section forbids unknown keys; :func:`load_recipe` turns pydantic's errors into one line that names the key
and the allowed keys or values. ``key=value`` overrides address nested keys with dots (``train.lr=1e-4``) and
are parsed as YAML scalars.

Extending: a stage that needs its own settings adds a ``Section`` subclass and one optional field on
:class:`Recipe` named after the stage (e.g. ``pretrain: PretrainSettings | None = None``). :class:`TrainSettings`
is what the shared loop (:mod:`leptonkit.train.loop`) reads; its fields apply to every stage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leptonkit.errors import InvalidInputError, NotFoundError

STAGES = ("classification", "ner", "sft", "pretrain")
METHODS = ("full", "lora", "ia3", "prefix", "freeze")
METHOD_LR = {"full": 5e-5, "lora": 5e-4, "ia3": 3e-3, "prefix": 1e-2, "freeze": 1e-3}
# Full fine-tuning of builtin:minilm for NER on CoNLL-2003 with these settings reaches test entity F1 0.859 in
# 2 epochs (benchmarks/finetune_conll.py); ``pii-setup`` trains its model with them unless told otherwise.
NER_FULL_TRAIN: dict[str, float | int] = {"epochs": 2, "lr": 1e-4, "batch_size": 16}


class Section(BaseModel):
    """A recipe section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(Section):
    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] | None = None  # None: peft's default for the architecture (query/value for BERT)


class IA3Settings(Section):
    target_modules: list[str] | None = None
    feedforward_modules: list[str] | None = None


class PrefixSettings(Section):
    num_virtual_tokens: int = Field(20, ge=1)


class EarlyStopping(Section):
    metric: str | None = None  # None: the task's main metric (macro_f1 for classification, entity_f1 for NER)
    mode: Literal["max", "min"] = "max"
    patience: int = Field(3, ge=1)  # evaluations without improvement before stopping


class AdversarialSettings(Section):
    """Embedding perturbation: FGM (one step of size ``epsilon``) or PGD (``steps`` steps of ``alpha``, in a ball)."""

    method: Literal["fgm", "pgd"] = "fgm"
    epsilon: float = Field(1.0, gt=0)
    alpha: float = Field(0.3, gt=0)
    steps: int = Field(3, ge=1)


class TrainSettings(Section):
    """Optimisation settings the shared loop reads, the same for every stage."""

    epochs: float = Field(3, gt=0)
    max_steps: int | None = Field(None, ge=1)  # optimiser steps; overrides epochs
    max_minutes: float | None = Field(None, gt=0)  # wall-clock bound; the run ends cleanly with a checkpoint
    batch_size: int = Field(32, ge=1)  # per process, per micro-step
    eval_batch_size: int = Field(64, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0)  # in a recipe, the default depends on the method (METHOD_LR)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 where supported, fp16 on other GPUs
    seed: int = 42
    max_length: int = Field(128, ge=8)
    group_by_length: bool = True
    eval_every: int | None = Field(None, ge=1)  # optimiser steps; None: at the end of every epoch
    checkpoint_every: int | None = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    early_stopping: EarlyStopping | None = Field(default_factory=EarlyStopping)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] = "none"
    # under torchrun: shard weights, gradients and optimiser state across ranks (FSDP2) instead of replicating them
    fsdp: bool = False


class PretrainSettings(Section):
    """Stage ``pretrain``: a causal LM from scratch (or continued from ``base``), or MLM on an encoder ``base``."""

    objective: Literal["clm", "mlm"] = "clm"
    extra_data: list[str] = Field(default_factory=list)  # more text files after ``data``
    preset: Literal["tiny", "small", "base"] = "tiny"
    model: dict[str, int] = Field(default_factory=dict)  # LlamaConfig overrides, e.g. {num_hidden_layers: 2}
    tokenizer: str | None = None  # reuse this model's tokenizer instead of training one (ref or folder)
    vocab_size: int = Field(8192, ge=261)
    block_size: int | None = Field(None, ge=8)  # default: the preset's context (128 for MLM)
    valid_fraction: float = Field(0.1, ge=0, lt=1)  # the corpus' last characters, held out
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    samples: int = Field(2, ge=0)  # continuations printed at each evaluation
    sample_tokens: int = Field(48, ge=1)


class SftSettings(Section):
    """Stage ``sft``: chat-template formatting, response-only loss, optional packing."""

    packing: bool = False
    valid_fraction: float = Field(0.1, ge=0, lt=1)  # held out when ``data`` has no valid split
    samples: int = Field(2, ge=0)  # held-out prompts answered at each evaluation
    sample_tokens: int = Field(64, ge=1)


class Recipe(Section):
    stage: Literal["classification", "ner", "sft", "pretrain"]
    pretrain: PretrainSettings = Field(default_factory=PretrainSettings)
    sft: SftSettings = Field(default_factory=SftSettings)
    name: str
    base: str | None = None
    data: str
    method: Literal["full", "lora", "ia3", "prefix", "freeze"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    ia3: IA3Settings = Field(default_factory=IA3Settings)
    prefix: PrefixSettings = Field(default_factory=PrefixSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    adversarial: AdversarialSettings | None = None
    merge: bool = False  # register merged weights instead of an adapter
    run_dir: str | None = None  # default: LEPTONKIT_HOME/runs/<name>-<UTC time>
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _base_for_finetuning(self) -> Recipe:
        if self.stage in ("classification", "ner", "sft") and not self.base:
            raise ValueError(f"stage {self.stage!r} needs 'base' (a registry ref, a folder or builtin:minilm)")
        return self

    @model_validator(mode="after")
    def _learning_rate_for_method(self) -> Recipe:
        """Without an explicit ``train.lr``, take the method's usual one: few trained weights want a larger step."""
        if "lr" not in self.train.model_fields_set:
            self.train.lr = METHOD_LR[self.method]
            self.train.model_fields_set.discard("lr")
        return self


def _describe(err: dict, model: type[BaseModel]) -> str:
    """One line for one pydantic error: the dotted key, then what is allowed there."""
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc) or "recipe"
    if err["type"] == "extra_forbidden":
        section: Any = model
        for part in loc[:-1]:
            field = section.model_fields.get(part)
            annotation = field.annotation if field else None
            section = next((a for a in getattr(annotation, "__args__", (annotation,)) if _is_section(a)), None)
            if section is None:
                break
        allowed = ", ".join(section.model_fields) if section is not None else ""
        return f"unknown recipe key {key!r}" + (f" (allowed here: {allowed})" if allowed else "")
    if err["type"] == "missing":
        return f"recipe key {key!r} is required"
    value = err.get("input")
    return f"recipe key {key!r}: {err['msg']} (got {value!r})" if loc else err["msg"].removeprefix("Value error, ")


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def validate_recipe(data: dict[str, Any], model: type[Recipe] = Recipe) -> Recipe:
    """Build a recipe; any schema violation is one :class:`InvalidInputError` line naming the key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(_describe(exc.errors()[0], model), param="recipe") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML scalars) to a nested mapping, returning a copy."""
    out = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"invalid override {item!r}", hint="write KEY=VALUE, e.g. train.lr=1e-4")
        value = yaml.safe_load(raw) if raw else None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InvalidInputError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe, apply overrides and validate it; a relative ``data`` path may be relative to the recipe."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise NotFoundError(f"recipe {file} not found", hint="give the path of a YAML recipe")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{file} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{file} must hold a mapping of recipe keys", hint="e.g. `stage: classification`")
    recipe = validate_recipe(apply_overrides(data, overrides or []))
    data_path = Path(recipe.data).expanduser()
    if not data_path.is_absolute() and (file.parent / data_path).exists():
        recipe.data = str(file.parent / data_path)
    return recipe
