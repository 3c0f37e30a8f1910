"""``PretrainModel``, ``FineTuneModel`` and ``SFTModel``: a training job as one object, whose ``.train(data, ...)``
runs it and returns the registered :class:`~leptonkit.sdk.model.Model`.

They are thin faces over :mod:`leptonkit.train.api` (``pretrain``, ``finetune``, ``sft``), the functions the CLI's
``leptonkit pretrain`` and ``leptonkit finetune`` call, with the same keyword names: training keys (``epochs``,
``max_steps``, ``max_minutes``, ``lr``, ``batch_size``, ...), recipe keys (``merge``, ``lora={...}``) and dotted
``overrides``. ``resources=`` (:mod:`leptonkit.sdk.resources`) sets the torch threads of the job, and a shape this
machine cannot give fails before any work.

Data: a prepared dataset folder, or a raw file that is prepared on the fly with the defaults of ``leptonkit data
prepare`` (its manifest is kept in the version's lineage, ``lineage["data"]["manifest"]``). The task, unless given,
is what the records are for: labels -> classification, tags -> ner, messages or instructions -> sft.
"""

from __future__ import annotations

import os
from typing import Any

from leptonkit.registry.store import Registry
from leptonkit.sdk.model import Model
from leptonkit.sdk.resources import ResourceShape, local_threads, resource_shape
from leptonkit.train import api

BUILTIN_BASES = {"minilm": "builtin:minilm", "smollm2": "builtin:smollm2"}


def _base(base: str, registry: Registry) -> str:
    """A registry ref or folder as given; a bare built-in name (``"minilm"``) that the registry does not hold is the
    built-in model (``builtin:minilm``)."""
    if base in BUILTIN_BASES and not registry.list(base) and not os.path.isdir(base):
        return BUILTIN_BASES[base]
    return base


class FineTuneModel:
    """Fine-tune ``base`` (a registry ref, a folder or ``builtin:...``) with ``method`` (full, lora, ia3, prefix,
    freeze) for ``task`` (default: inferred from the data).

    >>> job = FineTuneModel("minilm", method="lora", resources="cpu.2x", lr=1e-3)
    >>> job.base, job.method, job.resources.threads, job.options
    ('minilm', 'lora', 2, {'lr': 0.001})

    ``job.train("tickets.jsonl", epochs=5, name="tickets")`` returns the registered :class:`Model`.
    """

    task: str | None = None

    def __init__(
        self,
        base: str,
        *,
        method: str = "lora",
        task: str | None = None,
        resources: str | ResourceShape | None = None,
        registry: Registry | None = None,
        **options: Any,
    ) -> None:
        self.base = base
        self.method = method
        self.task = task or self.task
        self.resources = resource_shape(resources)
        self.registry = registry or Registry()
        self.options = options

    def train(
        self,
        data: str | os.PathLike[str],
        *,
        name: str,
        overrides: list[str] | None = None,
        resume: str | None = None,
        **options: Any,
    ) -> Model:
        """Train on ``data``, register the result as ``name``, return its :class:`Model`. ``options``: training and
        recipe keys, added to (and replacing) those given to the constructor."""
        if self.resources is not None:
            self.resources.check_local()
        with local_threads(self.resources):
            version = api.finetune(
                base=_base(self.base, self.registry),
                data=data,
                task=self.task,
                method=self.method,
                name=name,
                overrides=overrides,
                resume=resume,
                registry=self.registry,
                **(self.options | options),
            )
        return Model._of(version, self.registry)


class SFTModel(FineTuneModel):
    """Instruction tuning: :class:`FineTuneModel` with ``task="sft"`` on chat data (messages, instruction/output).

    >>> SFTModel("smollm2", method="lora").task
    'sft'
    """

    task = "sft"


class PretrainModel:
    """Pretrain a causal LM of ``architecture`` (``"llama"``) and ``size`` (``tiny``, ``small``, ``base``) from text,
    or continue pretraining ``base=``; ``objective="mlm"`` pretrains an encoder ``base`` instead.

    >>> job = PretrainModel("llama", size="tiny", resources="cpu.1x")
    >>> job.size, job.resources.name
    ('tiny', 'cpu.1x')

    ``job.train("corpus.txt", max_minutes=10)`` returns the registered :class:`Model` (named ``llama-tiny`` unless
    ``name=`` says otherwise).
    """

    ARCHITECTURES = ("llama",)

    def __init__(
        self,
        architecture: str = "llama",
        *,
        size: str = "tiny",
        resources: str | ResourceShape | None = None,
        registry: Registry | None = None,
        **options: Any,
    ) -> None:
        if architecture not in self.ARCHITECTURES:
            from leptonkit.errors import InvalidInputError

            raise InvalidInputError(
                f"unknown architecture {architecture!r}",
                hint=f"pretrain one of: {', '.join(self.ARCHITECTURES)}; continue another model with base=REF",
                param="architecture",
            )
        self.architecture = architecture
        self.size = size
        self.resources = resource_shape(resources)
        self.registry = registry or Registry()
        self.options = options

    def train(
        self, data: str | os.PathLike[str] | list[str | os.PathLike[str]], *, name: str | None = None, **options: Any
    ) -> Model:
        """Pretrain on one text file or several; ``options`` are :func:`leptonkit.train.api.pretrain`'s."""
        if self.resources is not None:
            self.resources.check_local()
        with local_threads(self.resources):
            version = api.pretrain(
                data,
                name=name or f"{self.architecture}-{self.size}",
                preset=self.size,
                registry=self.registry,
                **(self.options | options),
            )
        return Model._of(version, self.registry)
