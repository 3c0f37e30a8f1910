"""Run folders and per-stage defaults shared by the generator recipes (pretrain, SFT)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leptonkit.config import home
from leptonkit.train.checkpoint import PROGRESS_FILE
from leptonkit.train.loop import LoopResult, train_loop
from leptonkit.train.recipe import Recipe


def run_directory(recipe: Recipe, resume: str | None) -> Path:
    """The run folder, created if needed: the one being resumed, ``recipe.run_dir``, or
    ``LEPTONKIT_HOME/runs/<name>-<UTC time>``."""
    if resume is not None:
        path = Path(resume).expanduser()
        folder = path.parent.parent if (path / PROGRESS_FILE).is_file() else path
    elif recipe.run_dir:
        folder = Path(recipe.run_dir).expanduser()
    else:
        folder = home() / "runs" / f"{recipe.name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def apply_stage_defaults(section: Any, defaults: dict[str, Any]) -> None:
    """Set each default the recipe did not set explicitly (e.g. a higher learning rate for pretraining)."""
    for key, value in defaults.items():
        if key not in section.model_fields_set:
            setattr(section, key, value)


def stderr(message: str) -> None:
    """Progress lines go to stderr so that ``--json`` output on stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)


def train_generator(
    model: Any, loader: Any, recipe: Recipe, run_dir: Path, *, evaluate: Any, resume: str | None
) -> LoopResult:
    """The shared training loop as the generator recipes run it: the best checkpoint has the lowest held-out loss."""
    return train_loop(
        model,
        loader,
        recipe.train,
        run_dir,
        evaluate=evaluate,
        resume=resume,
        primary_metric="loss",
        primary_mode="min",
        resume_hint=f"resume with --resume {run_dir}",
    )
