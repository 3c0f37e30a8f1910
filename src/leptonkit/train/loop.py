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
GradScaler on other GPUs. Bounds: ``epochs``, ``max_steps``, ``max_minutes``. Every ``checkpoint_every`` optimiser
steps a checkpoint holds the trainable weights, optimiser, scheduler, scaler, all RNG states and the position in
the data, so that ``resume`` continues exactly where the run stopped. Early stopping keeps the best checkpoint in
``best/``; when the loop returns, the model holds the best weights (or the last ones when there was no evaluation).

Stops that need the user: a non-finite loss or gradient stops before the bad update, saves the last good state
and raises :class:`NonFiniteLossError`; Ctrl-C saves a checkpoint and raises :class:`TrainingInterrupted`, whose
message names the checkpoint to resume from. Under ``torch.distributed`` (``torchrun``) the model is wrapped in
DDP, every rank evaluates (so they all take the same early-stopping decision) and only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from leptonkit.errors import LeptonkitError, NotFoundError
from leptonkit.monitor import resources
from leptonkit.train.recipe import TrainSettings
from leptonkit.versions import cpu_supports_bf16

CHECKPOINTS = "checkpoints"
BEST = "best"
METRIC_LOG = "metrics.jsonl"
TRAINABLE_FILE = "trainable.safetensors"
STATE_FILE = "state.pt"
PROGRESS_FILE = "progress.json"

Evaluate = Callable[[torch.nn.Module], dict[str, float]]
ComputeLoss = Callable[[torch.nn.Module, dict[str, Any]], torch.Tensor]


class NonFiniteLossError(LeptonkitError):
    """The loss or gradient became NaN/inf; training stopped before the bad update."""

    exit_code = 1


class TrainingInterrupted(LeptonkitError):
    """Ctrl-C: a checkpoint was written and the run can be resumed from it."""

    exit_code = 130


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
def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def _barrier() -> None:
    if world_size() > 1:
        torch.distributed.barrier()


def init_distributed() -> None:
    """Join the process group torchrun set up (``WORLD_SIZE`` > 1): gloo on CPU, NCCL on GPUs."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


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


# ---------------------------------------------------------------------------------------------- checkpoints
def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable tensors by name, one name per storage (tied weights are saved once)."""
    seen: set[int] = set()
    out = {}
    for name, param in _unwrap(model).named_parameters():
        if param.requires_grad and param.data_ptr() not in seen:
            seen.add(param.data_ptr())
            out[name] = param.detach().cpu().contiguous()
    return out


def load_trainable(model: torch.nn.Module, folder: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / TRAINABLE_FILE))
    named = dict(_unwrap(model).named_parameters())
    missing = [k for k in tensors if k not in named]
    if missing:
        raise LeptonkitError(
            f"checkpoint {folder} does not match the model (unknown tensor {missing[0]!r})",
            hint="resume with the same recipe (base, method, task) that wrote it",
        )
    with torch.no_grad():
        for key, value in tensors.items():
            named[key].copy_(value)


def _rng_state() -> dict[str, Any]:
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
    """Weights, optimiser/scheduler/scaler and RNG state, and the data position, into ``folder`` (atomically)."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file(trainable_state(model), str(tmp / TRAINABLE_FILE))
        torch.save({k: v.state_dict() for k, v in training.items() if v is not None} | {"rng": rng}, tmp / STATE_FILE)
        (tmp / PROGRESS_FILE).write_text(json.dumps(progress.__dict__, indent=2))

    return _write_atomically(folder, write)


def latest_checkpoint(path: Path) -> Path:
    """``path`` itself when it is a checkpoint, else the newest checkpoint of the run folder ``path``."""
    if (path / PROGRESS_FILE).is_file():
        return path
    candidates = sorted((path / CHECKPOINTS).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    if not candidates:
        raise NotFoundError(f"no checkpoint in {path}", hint="give a run folder or one of its checkpoints/step-N")
    return candidates[-1]


def _prune(run_dir: Path, keep: int) -> None:
    folders = sorted((run_dir / CHECKPOINTS).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in folders[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


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


def _progress_bar(total: int) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
        disable=not (is_main() and console.is_terminal),
    )


# ---------------------------------------------------------------------------------------------- the loop
def _move(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _batch_size(batch: dict[str, Any]) -> int:
    first = next(v for v in batch.values() if isinstance(v, torch.Tensor))
    return int(first.shape[0])


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
    model.to(device)
    raw_model = model
    if world_size() > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    batches_per_epoch = len(train_loader)
    steps = total_steps(settings, batches_per_epoch)
    optimizer = build_optimizer(raw_model, settings)
    scheduler = build_scheduler(optimizer, settings, steps)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    training = {"optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if adversary is not None:
        adversary.setup(raw_model)

    stopping = settings.early_stopping
    metric = (stopping.metric if stopping and stopping.metric else None) or primary_metric
    mode = stopping.mode if stopping and stopping.metric else primary_mode
    progress = Progress()
    if resume is not None:
        checkpoint = latest_checkpoint(Path(resume))
        load_trainable(raw_model, checkpoint)
        state = torch.load(checkpoint / STATE_FILE, weights_only=False)
        for key, obj in training.items():
            if obj is not None and key in state:
                obj.load_state_dict(state[key])
        progress = Progress(**json.loads((checkpoint / PROGRESS_FILE).read_text()))
        _set_rng_state(state["rng"])

    log = RunLog(run_dir)
    history: list[dict[str, Any]] = []
    status = "completed"
    last_checkpoint: Path | None = None
    hint = resume_hint or "resume with --resume {checkpoint}"
    started = time.monotonic() - progress.train_seconds
    session_start = time.monotonic()
    overhead = {"seconds": 0.0}  # evaluation and checkpoint time, left out of the throughput
    seen_at_start = progress.samples
    memory_at_start = _start_peak_memory(device)

    boundary: dict[str, Any] = {}

    def mark_boundary() -> None:
        """Remember the state after an optimiser step: checkpoints always resume from a step boundary."""
        boundary["progress"] = replace(progress)
        boundary["rng"] = _rng_state()

    def checkpoint_now() -> Path | None:
        nonlocal last_checkpoint
        if last_checkpoint is not None and last_checkpoint.name == f"step-{progress.step}":
            return last_checkpoint
        began = time.monotonic()
        progress.train_seconds = began - started
        saved = boundary["progress"]
        saved.train_seconds = began - started
        if is_main():
            last_checkpoint = save_checkpoint(
                run_dir / CHECKPOINTS / f"step-{saved.step}", raw_model, saved, training, boundary["rng"]
            )
            _prune(run_dir, settings.keep_checkpoints)
        _barrier()
        overhead["seconds"] += time.monotonic() - began
        return last_checkpoint

    def run_evaluation() -> bool:
        """Evaluate, log, keep the best; True when early stopping says stop."""
        if evaluate is None:
            return False
        began = time.monotonic()
        model.eval()
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
                save_checkpoint(run_dir / BEST, raw_model, progress, {}, _rng_state())
            _barrier()
            return False
        progress.bad_evals += 1
        return stopping is not None and progress.bad_evals >= stopping.patience

    sampler = train_loader.batch_sampler
    mark_boundary()
    model.train()
    optimizer.zero_grad(set_to_none=True)
    bar = _progress_bar(steps)
    ctrl_c = _GracefulInterrupt()
    try:
        with bar:
            task = bar.add_task("train", total=steps, completed=progress.step, info="")
            while progress.step < steps and status == "completed":
                for batch in _epoch_batches(train_loader, sampler, progress):
                    batch = _move(batch, device)
                    position = progress.batch_in_epoch + 1
                    at_step = position % settings.grad_accum == 0 or position == batches_per_epoch
                    with contextlib.nullcontext() if at_step or world_size() == 1 else model.no_sync():
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
                    with_grad = [p for p in raw_model.parameters() if p.grad is not None]
                    norm = torch.nn.utils.clip_grad_norm_(with_grad, settings.max_grad_norm or math.inf)
                    if not torch.isfinite(norm) and scaler is None:
                        optimizer.zero_grad(set_to_none=True)
                        raise _non_finite(progress, checkpoint_now(), "gradient")
                    if scaler:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    progress.step += 1
                    mark_boundary()
                    bar.update(task, completed=progress.step, info=f"loss {loss.item():.4f}")
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
        _barrier()
        load_trainable(raw_model, best_dir)
    session_seconds = time.monotonic() - session_start - overhead["seconds"]
    return LoopResult(
        status=status,
        progress=progress,
        history=history,
        best_dir=best_dir,
        last_checkpoint=last_checkpoint,
        samples_per_second=(progress.samples - seen_at_start) / max(session_seconds, 1e-9),
        peak_memory_mb=_peak_memory_mb(device),
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


def _start_peak_memory(device: torch.device) -> float | None:
    """Start measuring the loop's peak memory and return what is in use now (MB).

    GPU: torch's peak counter is reset. CPU: the process's resident high-water mark is reset (Linux,
    ``/proc/self/clear_refs``), so that the peak is the training's, not that of loading and tokenising before it.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _proc_status_mb("VmRSS")


def _proc_status_mb(key: str) -> float | None:
    """A memory figure (``VmRSS``, ``VmHWM``) of this process from ``/proc/self/status`` in MB, or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch since the loop started, or on CPU the process's peak resident memory
    since then (Linux; elsewhere since the process started), model and libraries included."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
