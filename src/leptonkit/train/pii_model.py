"""``pii-setup``: fine-tune the NER model the PII detector uses for names, places and organisations.

CoNLL-style data (train/valid/test files) is prepared without PII redaction (its names are the labels) and
fine-tuned with the fine-tuning recipe (full fine-tuning of ``builtin:minilm`` by default, 2 epochs at lr 1e-4: the
settings that reach CoNLL-2003 test entity F1 0.86); the new version is aliased ``@pii``, which every detector then
finds by itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from leptonkit.config import home
from leptonkit.data import prepare
from leptonkit.data.split import split_of_path
from leptonkit.errors import InvalidInputError
from leptonkit.privacy.pii import PII_ALIAS
from leptonkit.registry import Registry
from leptonkit.train.api import finetune
from leptonkit.train.recipe import NER_FULL_TRAIN

DEFAULT_BASE = "builtin:minilm"
DEFAULT_NAME = "pii-ner"
DATA_ENV = "LEPTONKIT_PII_DATA"


def conll_inputs(data: str | os.PathLike[str] | None) -> list[Path]:
    """The CoNLL files of ``data`` (a folder of train/valid/test files, or one file); default $LEPTONKIT_PII_DATA."""
    if data is None:
        data = os.environ.get(DATA_ENV)
        if not data:
            raise InvalidInputError(
                "no NER training data given",
                hint=f"pass --data CONLL_DIR (train/valid/test CoNLL files, e.g. CoNLL-2003) or set {DATA_ENV}",
            )
    path = Path(data).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InvalidInputError(f"--data {path} not found", hint="give a folder of CoNLL files or one file")
    files = sorted(p for p in path.iterdir() if p.is_file() and split_of_path(p))
    if not files:
        raise InvalidInputError(f"{path} holds no train/valid/test files", hint="name the CoNLL files train.txt, ...")
    return files


def setup_pii_model(
    data: str | os.PathLike[str] | None = None,
    *,
    base: str = DEFAULT_BASE,
    name: str = DEFAULT_NAME,
    limit: int | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    registry: Any = None,
    **overrides: Any,
) -> Any:
    """Prepare the CoNLL data, fine-tune ``base`` for NER, register it as ``name`` and alias it ``@pii``.

    Training uses the fine-tuning recipe with :data:`~leptonkit.train.recipe.NER_FULL_TRAIN` (the CoNLL-2003
    settings measured by ``benchmarks/finetune_conll.py``); ``overrides`` (``epochs=1``, ``max_minutes=10``, ...)
    take precedence.
    """
    registry = registry or Registry()
    inputs = conll_inputs(data)
    out = Path(work_dir or home() / "data" / f"{name}-conll").expanduser()
    manifest = prepare(
        [str(p) for p in inputs],
        task="ner",
        fmt="conll",
        out=out,
        pii="off",  # the names are what the model must learn
        dedup="exact",
        limit=limit,
        overwrite=True,
        split=None if len(inputs) > 1 else "0.9,0.1",
    )
    settings = NER_FULL_TRAIN | overrides
    version = finetune(base=base, data=out, task="ner", method="full", name=name, registry=registry, **settings)
    registry.tag(version.ref, {"purpose": "pii", "data_hash": manifest["content_hash"][:16]})
    return registry.alias(version.ref, PII_ALIAS)
