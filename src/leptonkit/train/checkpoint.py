"""Checkpoints of a training run: what is saved, where, and how a run resumes exactly from one.

A run folder holds ``checkpoints/step-N/`` (the newest ``keep`` of them) and ``best/``. Each checkpoint folder has
``trainable.safetensors`` (trainable tensors only, tied weights once), ``state.pt`` (optimiser, scheduler, scaler and
every RNG state) and ``progress.json`` (:class:`Progress`: the step and the position in the data). Folders are written
under a temporary name and renamed into place, so a crash never leaves a half checkpoint that looks whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from leptonkit.errors import LeptonkitError, NotFoundError
from leptonkit.train.distributed import unwrap

CHECKPOINTS = "checkpoints"
BEST = "best"
TRAINABLE_FILE = "trainable.safetensors"
STATE_FILE = "state.pt"
PROGRESS_FILE = "progress.json"


@dataclass
class Progress:
    """Where a run is: saved in every checkpoint as ``progress.json``."""

    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of ``epoch`` already consumed
    samples: int = 0  # training examples seen (this rank)
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable tensors by name, one name per storage (tied weights are saved once)."""
    seen: set[int] = set()
    out = {}
    for name, param in unwrap(model).named_parameters():
        if param.requires_grad and param.data_ptr() not in seen:
            seen.add(param.data_ptr())
            out[name] = param.detach().cpu().contiguous()
    return out


def load_trainable(model: torch.nn.Module, folder: Path) -> None:
    """Copy the trainable tensors saved in ``folder`` into ``model``."""
    from safetensors.torch import load_file

    tensors = load_file(str(folder / TRAINABLE_FILE))
    named = dict(unwrap(model).named_parameters())
    missing = [k for k in tensors if k not in named]
    if missing:
        raise LeptonkitError(
            f"checkpoint {folder} does not match the model (unknown tensor {missing[0]!r})",
            hint="resume with the same recipe (base, method, task) that wrote it",
        )
    with torch.no_grad():
        for key, value in tensors.items():
            named[key].copy_(value)


def rng_state() -> dict[str, Any]:
    """Every random generator a run draws from: Python, torch, numpy, CUDA."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    with contextlib.suppress(ImportError):
        import numpy as np

        state["numpy"] = np.random.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_atomically(target: Path, write: Callable[[Path], None]) -> Path:
    """Write a folder under a temporary name, then rename it into place."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def save_checkpoint(
    folder: Path, model: torch.nn.Module, progress: Progress, training: dict[str, Any], rng: dict[str, Any]
) -> Path:
    """Weights, optimiser/scheduler/scaler (``training``, by name; ``None`` values are skipped) and RNG state, and
    the data position, into ``folder`` (atomically)."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file(trainable_state(model), str(tmp / TRAINABLE_FILE))
        torch.save({k: v.state_dict() for k, v in training.items() if v is not None} | {"rng": rng}, tmp / STATE_FILE)
        (tmp / PROGRESS_FILE).write_text(json.dumps(asdict(progress), indent=2))

    return _write_atomically(folder, write)


def load_checkpoint(folder: Path, model: torch.nn.Module, training: dict[str, Any]) -> Progress:
    """Restore what :func:`save_checkpoint` wrote into ``model``, the objects of ``training`` and the RNGs; returns
    the progress to continue from."""
    load_trainable(model, folder)
    state = torch.load(folder / STATE_FILE, weights_only=False)
    for key, obj in training.items():
        if obj is not None and key in state:
            obj.load_state_dict(state[key])
    _set_rng_state(state["rng"])
    return Progress(**json.loads((folder / PROGRESS_FILE).read_text()))


def _step_folders(run_dir: Path) -> list[Path]:
    return sorted((run_dir / CHECKPOINTS).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))


def step_folder(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step-{step}"


def latest_checkpoint(path: Path) -> Path:
    """``path`` itself when it is a checkpoint, else the newest checkpoint of the run folder ``path``."""
    if (path / PROGRESS_FILE).is_file():
        return path
    candidates = _step_folders(path)
    if not candidates:
        raise NotFoundError(f"no checkpoint in {path}", hint="give a run folder or one of its checkpoints/step-N")
    return candidates[-1]


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step checkpoints of ``run_dir``."""
    for old in _step_folders(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
