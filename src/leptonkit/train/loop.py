"""The one training loop every leptonkit recipe uses (classification, NER, SFT, pretraining).

Interface::

    result = train_loop(
        model,                      # a torch module (a transformers/peft model); moved to the device here
        train_loader,               # DataLoader; its batch_sampler may have set_epoch(e) and set_start(i)
        settings,                   # leptonkit.train.recipe.TrainSettings (lr, schedule, precision, bounds, ...)
        run_dir,                    # checkpoints/, best/, metrics.jsonl, tensorboard/ are written here (rank 0)
        evaluate=fn,                # fn(model) -> {"metric": float}: called every eval_every steps / each epoch
        compute_loss=fn,            # fn(model, batch) -> loss tensor; default: model(**batch).loss
        adversary=None,             # leptonkit.train.adversarial.EmbeddingAttack: extra perturbed backward
        resume=None,                # a checkpoint folder, or a run folder (its latest checkpoint)
        primary_metric="macro_f1",  # the metric early stopping and the best checkpoint follow
        primary_mode="max",         # "min" when lower is better (a loss), unless the recipe names its own metric
    )

Behaviour: AdamW (no weight decay on biases and norms), warmup then linear/cosine/constant decay (transformers'
schedulers), gradient accumulation and clipping, bf16 autocast where the CPU/GPU supports it, fp16 autocast with a
GradScaler on other GPUs. A BERT-family sequence classifier computes only the first token's row in its last layer, the
one row its head reads (:mod:`leptonkit.train.first_token`), and BERT-family self-attention projects query, key and
value in one matmul (:mod:`leptonkit.train.fused_qkv`). On a CPU, dropout draws its masks on every core
(:mod:`leptonkit.train.hashed_dropout`), glibc keeps freed memory for the next step (:mod:`leptonkit.train.allocator`)
and, in a single process, the word embeddings' gradient stays in one buffer written by rows
(:mod:`leptonkit.train.embedding_rows`); with the fused AdamW, gradient clipping is folded into its step. Bounds:
``epochs``, ``max_steps``, ``max_minutes``. Every ``checkpoint_every`` optimiser steps a checkpoint holds the trainable
weights, optimiser, scheduler, scaler, all RNG states and the position in the data, so that ``resume`` continues
exactly where the run stopped. Early stopping keeps the best checkpoint in ``best/``; when the loop returns, the
model holds the best weights (or the last ones when there was no evaluation).

Stops that need the user: a non-finite loss or gradient stops before the bad update, saves the last good state
and raises :class:`NonFiniteLossError`; Ctrl-C saves a checkpoint and raises :class:`TrainingInterrupted`, whose
message names the checkpoint to resume from. Under ``torch.distributed`` (``torchrun``) the model is wrapped in
DDP, every rank evaluates (so they all take the same early-stopping decision) and only rank 0 writes files.

This file is the loop and its optimisation; its neighbours: :mod:`leptonkit.train.checkpoint` (what a checkpoint
holds, resume), :mod:`leptonkit.train.distributed` (ranks, DDP), :mod:`leptonkit.train.progress` (a bar on a
terminal, a plain line every ``log_every`` steps without one), :mod:`leptonkit.monitor.resources` (peak memory).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from leptonkit.errors import InvalidInputError, LeptonkitError
from leptonkit.monitor import resources
from leptonkit.train.allocator import keep_freed_memory
from leptonkit.train.checkpoint import (
    BEST,
    CHECKPOINTS,
    Progress,
    latest_checkpoint,
    load_checkpoint,
    load_trainable,
    prune,
    rng_state,
    save_checkpoint,
    step_folder,
)
from leptonkit.train.distributed import (
    barrier,
    gather_into,
    is_main,
    local,
    no_sync,
    pick_device,
    shard,
    unwrap,
    world_size,
    wrap,
)
from leptonkit.train.embedding_rows import row_gradients
from leptonkit.train.first_token import first_token_rows
from leptonkit.train.fused_qkv import fused_qkv
from leptonkit.train.hashed_dropout import hashed_dropout
from leptonkit.train.history import METRIC_LOG
from leptonkit.train.progress import ProgressDisplay
from leptonkit.train.recipe import TrainSettings
from leptonkit.versions import cpu_supports_bf16

Evaluate = Callable[[torch.nn.Module], dict[str, float]]
ComputeLoss = Callable[[torch.nn.Module, dict[str, Any]], torch.Tensor]


class NonFiniteLossError(LeptonkitError):
    """The loss or gradient became NaN/inf; training stopped before the bad update."""

    exit_code = 1


class TrainingInterrupted(LeptonkitError):
    """Ctrl-C: a checkpoint was written and the run can be resumed from it."""

    exit_code = 130


@dataclass
class LoopResult:
    status: str  # completed | early_stopped | max_steps | time_limit
    progress: Progress
    history: list[dict[str, Any]] = field(default_factory=list)  # every evaluation, in order
    best_dir: Path | None = None
    last_checkpoint: Path | None = None
    samples_per_second: float = 0.0
    # Peak memory while the loop ran. GPU: peak allocated by torch; CPU: the process's peak resident memory (Linux
    # resets the high-water mark at the loop's start; elsewhere it is the peak of the whole process so far).
    peak_memory_mb: float | None = None
    memory_at_start_mb: float | None = None  # in use when the loop started (the model included), same measure
    precision: str = "fp32"


# ---------------------------------------------------------------------------------------------- environment
def resolve_precision(setting: str, device: torch.device) -> str:
    """``auto`` -> bf16 where the hardware has it, fp16 on older GPUs, else fp32."""
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed)


# ---------------------------------------------------------------------------------------------- optimisation
def build_optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW over trainable parameters; biases and norm weights (1-D tensors) get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": settings.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=settings.lr, fused=fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, total_steps: int) -> Any:
    from transformers import get_scheduler

    name = {"constant": "constant_with_warmup"}.get(settings.scheduler, settings.scheduler)
    warmup = math.ceil(settings.warmup_ratio * total_steps)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def total_steps(settings: TrainSettings, batches_per_epoch: int) -> int:
    if settings.max_steps:
        return settings.max_steps
    return max(1, math.ceil(settings.epochs * batches_per_epoch / settings.grad_accum))


def default_loss(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    return model(**batch).loss


# ---------------------------------------------------------------------------------------------- logging
class RunLog:
    """JSON lines and TensorBoard scalars in the run folder; a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path) -> None:
        self.enabled = is_main()
        self.writer = None
        if self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.jsonl = (run_dir / METRIC_LOG).open("a")
            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, prefix: str, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, "split": prefix, **values}) + "\n")
        self.jsonl.flush()
        for key, value in values.items():
            if isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.writer.close()


# ---------------------------------------------------------------------------------------------- the loop
def _move(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _batch_size(batch: dict[str, Any]) -> int:
    first = next(v for v in batch.values() if isinstance(v, torch.Tensor))
    return int(first.shape[0])


def _step_clipped(optimizer: torch.optim.Optimizer, norm: torch.Tensor, max_norm: float) -> None:
    """``optimizer.step()`` on gradients scaled by ``min(1, max_norm / (norm + 1e-6))``, as ``clip_grad_norm_`` scales
    them, done by the fused AdamW as it reads each gradient: its ``grad_scale`` is the divisor ``GradScaler`` uses.

    This saves the second of ``clip_grad_norm_``'s two passes over the gradients (the norm reads each gradient, the
    scaling reads and writes it): clipping took 6.5 ms for MiniLM-L6's 22.7M gradients on a 2-core AMD EPYC (Zen 5).
    The step writes the scaled gradients back."""
    optimizer.grad_scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0).reciprocal()  # type: ignore[attr-defined]
    try:
        optimizer.step()
    finally:
        del optimizer.grad_scale  # type: ignore[attr-defined]


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def train_loop(
    model: torch.nn.Module,
    train_loader: torch.utils.data.DataLoader,
    settings: TrainSettings,
    run_dir: str | os.PathLike[str],
    *,
    evaluate: Evaluate | None = None,
    compute_loss: ComputeLoss = default_loss,
    adversary: Any = None,
    resume: str | os.PathLike[str] | None = None,
    primary_metric: str | None = None,
    primary_mode: str = "max",  # "min" for a loss: which value of primary_metric is best when the recipe names none
    resume_hint: str | None = None,
) -> LoopResult:
    """Train ``model`` in place; see the module docstring for the contract."""
    run_dir = Path(run_dir)
    if is_main():
        (run_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    device = pick_device()
    precision = resolve_precision(settings.precision, device)
    seed_everything(settings.seed)
    # FSDP: a sharded copy trains on the device; ``raw_model`` stays a plain module in CPU memory, given the full
    # weights (gather_into) to evaluate, checkpoint and return. Its checkpoints hold weights, not optimiser state.
    sharded = settings.fsdp and world_size() > 1
    if sharded and (resume is not None or adversary is not None):
        raise InvalidInputError(
            "train.fsdp runs cannot be resumed or trained adversarially yet", hint="drop --resume/adversarial or fsdp"
        )
    raw_model = model
    model = shard(model, device) if sharded else wrap(model.to(device), device)

    batches_per_epoch = len(train_loader)
    steps = total_steps(settings, batches_per_epoch)
    optimizer = build_optimizer(unwrap(model), settings)
    scheduler = build_scheduler(optimizer, settings, steps)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    training = {"optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    fold_clipping = bool(settings.max_grad_norm) and scaler is None and not sharded and optimizer.defaults["fused"]
    if adversary is not None:
        adversary.setup(raw_model)

    stopping = settings.early_stopping
    metric = (stopping.metric if stopping and stopping.metric else None) or primary_metric
    mode = stopping.mode if stopping and stopping.metric else primary_mode
    progress = Progress()
    if resume is not None:
        progress = load_checkpoint(latest_checkpoint(Path(resume)), raw_model, training)

    log = RunLog(run_dir)
    history: list[dict[str, Any]] = []
    status = "completed"
    last_checkpoint: Path | None = None
    hint = resume_hint or "resume with --resume {checkpoint}"
    started = time.monotonic() - progress.train_seconds
    session_start = time.monotonic()
    overhead = {"seconds": 0.0}  # evaluation and checkpoint time, left out of the throughput
    seen_at_start = progress.samples
    memory_at_start = resources.start_peak_memory(device)

    boundary: dict[str, Any] = {}

    def samples_per_second() -> float:
        """Training examples per second of this session, evaluation and checkpoint time left out."""
        seconds = time.monotonic() - session_start - overhead["seconds"]
        return (progress.samples - seen_at_start) / max(seconds, 1e-9)

    def mark_boundary() -> None:
        """Remember the state after an optimiser step: checkpoints always resume from a step boundary."""
        boundary["progress"] = replace(progress)
        boundary["rng"] = rng_state()

    def checkpoint_now() -> Path | None:
        nonlocal last_checkpoint
        if boundary.get("saved_step") == progress.step:  # known on every rank: they all skip the collectives
            return last_checkpoint
        began = time.monotonic()
        progress.train_seconds = began - started
        saved = boundary["progress"]
        saved.train_seconds = began - started
        boundary["saved_step"] = saved.step
        if sharded:
            gather_into(raw_model, model)
        if is_main():
            last_checkpoint = save_checkpoint(
                step_folder(run_dir, saved.step), raw_model, saved, {} if sharded else training, boundary["rng"]
            )
            prune(run_dir, settings.keep_checkpoints)
        barrier()
        overhead["seconds"] += time.monotonic() - began
        return last_checkpoint

    def run_evaluation() -> bool:
        """Evaluate, log, keep the best; True when early stopping says stop."""
        if evaluate is None:
            return False
        began = time.monotonic()
        model.eval()
        if sharded:
            gather_into(raw_model, model)
            raw_model.eval()
        with torch.no_grad(), _autocast(device, autocast_dtype):
            values = evaluate(raw_model)
        model.train()
        overhead["seconds"] += time.monotonic() - began
        record = {"step": progress.step, "epoch": progress.epoch, **values}
        history.append(record)
        log.log(progress.step, "valid", values)
        if metric is None or metric not in values:
            return False
        if _improved(values[metric], progress.best_metric, mode):
            progress.best_metric, progress.best_step, progress.bad_evals = values[metric], progress.step, 0
            if is_main():
                save_checkpoint(run_dir / BEST, raw_model, progress, {}, rng_state())
            barrier()
            return False
        progress.bad_evals += 1
        return stopping is not None and progress.bad_evals >= stopping.patience

    sampler = train_loader.batch_sampler
    mark_boundary()
    model.train()
    optimizer.zero_grad(set_to_none=True)
    display = ProgressDisplay(steps, done=progress.step, every=settings.log_every, enabled=is_main())
    ctrl_c = _GracefulInterrupt()
    try:
        on_cpu = device.type == "cpu"
        single = on_cpu and world_size() == 1 and adversary is None
        with (
            display,
            first_token_rows(unwrap(model)),
            fused_qkv(unwrap(model)),
            hashed_dropout(on_cpu),
            keep_freed_memory(on_cpu),
            row_gradients(unwrap(model), single) as rows,
        ):
            while progress.step < steps and status == "completed":
                for batch in _epoch_batches(train_loader, sampler, progress):
                    batch = _move(batch, device)
                    position = progress.batch_in_epoch + 1
                    at_step = position % settings.grad_accum == 0 or position == batches_per_epoch
                    with contextlib.nullcontext() if at_step else no_sync(model):
                        loss = _scaled_loss(compute_loss, model, batch, device, autocast_dtype, 1, None)
                        if not torch.isfinite(loss):
                            raise _non_finite(progress, checkpoint_now(), "loss")
                        scaled = loss / settings.grad_accum
                        (scaler.scale(scaled) if scaler else scaled).backward()
                        if adversary is not None:
                            adversary.attack(
                                raw_model,
                                partial(
                                    _scaled_loss,
                                    compute_loss,
                                    model,
                                    batch,
                                    device,
                                    autocast_dtype,
                                    settings.grad_accum,
                                    scaler,
                                ),
                            )
                    progress.batch_in_epoch = position
                    progress.samples += _batch_size(batch)
                    if ctrl_c.requested:
                        raise KeyboardInterrupt
                    if not at_step:
                        continue
                    if scaler:
                        scaler.unscale_(optimizer)
                    with_grad = [p for p in unwrap(model).parameters() if p.grad is not None]
                    if fold_clipping:
                        grads = [p.grad for p in with_grad]
                        norm = torch.nn.utils.get_total_norm(rows.norm_operands(grads) if rows else grads)
                    else:
                        norm = local(torch.nn.utils.clip_grad_norm_(with_grad, settings.max_grad_norm or math.inf))
                    if not torch.isfinite(norm) and scaler is None:
                        optimizer.zero_grad(set_to_none=True)
                        raise _non_finite(progress, checkpoint_now(), "gradient")
                    if scaler:
                        scaler.step(optimizer)
                        scaler.update()
                    elif fold_clipping:
                        _step_clipped(optimizer, norm, settings.max_grad_norm)
                    else:
                        optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    progress.step += 1
                    mark_boundary()
                    display.update(
                        progress.step,
                        loss=loss.item(),
                        lr=scheduler.get_last_lr()[0],
                        samples_per_second=samples_per_second(),
                    )
                    if progress.step % settings.log_every == 0 or progress.step == steps:
                        epoch = progress.epoch + progress.batch_in_epoch / batches_per_epoch
                        log.log(
                            progress.step,
                            "train",
                            {
                                "loss": loss.item(),
                                "lr": scheduler.get_last_lr()[0],
                                "grad_norm": float(norm),
                                "epoch": epoch,
                            }
                            | resources.snapshot(),  # CPU/GPU memory and utilisation beside the loss
                        )
                    stop = bool(settings.eval_every) and progress.step % settings.eval_every == 0 and run_evaluation()
                    if settings.checkpoint_every and progress.step % settings.checkpoint_every == 0:
                        checkpoint_now()
                    if stop:
                        status = "early_stopped"
                    elif settings.max_minutes and time.monotonic() - started > settings.max_minutes * 60:
                        status = "time_limit"
                    if status != "completed" or progress.step >= steps:
                        break
                if progress.batch_in_epoch >= batches_per_epoch:
                    progress.epoch += 1
                    progress.batch_in_epoch = 0
                    mark_boundary()
                    if not settings.eval_every and status == "completed" and run_evaluation():
                        status = "early_stopped"
            if status != "early_stopped" and evaluate is not None and history_step(history) != progress.step:
                run_evaluation()
    except KeyboardInterrupt:
        ctrl_c.restore()
        saved = checkpoint_now()
        log.close()
        raise TrainingInterrupted(
            f"training interrupted at step {progress.step}; checkpoint saved to {saved}",
            hint=hint.format(checkpoint=saved),
        ) from None
    ctrl_c.restore()
    last_checkpoint = checkpoint_now()
    log.close()
    best_dir = run_dir / BEST if progress.best_step is not None else None
    if best_dir is not None:
        barrier()
        load_trainable(raw_model, best_dir)
    return LoopResult(
        status=status,
        progress=progress,
        history=history,
        best_dir=best_dir,
        last_checkpoint=last_checkpoint,
        samples_per_second=samples_per_second(),
        peak_memory_mb=resources.peak_memory_mb(device),
        memory_at_start_mb=memory_at_start,
        precision=precision,
    )


class _GracefulInterrupt:
    """The first Ctrl-C asks the loop to stop after the current batch (a clean point to checkpoint at); a second
    one interrupts at once. Only the main thread can own the handler; elsewhere Ctrl-C behaves as usual."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def history_step(history: list[dict[str, Any]]) -> int | None:
    return history[-1]["step"] if history else None


def _epoch_batches(loader: Any, sampler: Any, progress: Progress) -> Any:
    """The rest of the current epoch: reshuffled per epoch, starting after the batches already consumed."""
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(progress.epoch)
    seekable = hasattr(sampler, "set_start")
    if seekable:
        sampler.set_start(progress.batch_in_epoch)
    rng = torch.get_rng_state()
    iterator = iter(loader)
    torch.set_rng_state(rng)  # a DataLoader draws a base seed from the global RNG: keep resumed runs identical
    if seekable:
        return iterator
    for _ in range(progress.batch_in_epoch):  # a loader that cannot seek: skip the consumed batches
        next(iterator)
    return iterator


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _scaled_loss(
    compute_loss: ComputeLoss,
    model: torch.nn.Module,
    batch: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype | None,
    accum: int,
    scaler: Any,
) -> torch.Tensor:
    """The loss on the current batch as the main backward sees it (autocast, accumulation, loss scaling)."""
    with _autocast(device, dtype):
        loss = compute_loss(model, batch) / accum
    return scaler.scale(loss) if scaler else loss


def _non_finite(progress: Progress, saved: Path | None, what: str) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"training stopped at step {progress.step}: the {what} is not finite (NaN or inf); "
        f"the last good state is saved in {saved}",
        hint="lower train.lr, set train.max_grad_norm, or use train.precision=fp32, then resume from that checkpoint",
    )
