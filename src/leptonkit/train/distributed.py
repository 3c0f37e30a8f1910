"""The process group as the training loop sees it: rank, world size, the device of this rank, DDP wrapping.

Under ``torchrun`` (``WORLD_SIZE`` > 1) :func:`init_distributed` joins the group (gloo on CPU, NCCL on GPUs); in a
single process every helper answers as rank 0 of 1 and nothing is wrapped.
"""

from __future__ import annotations

import os

import torch


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def is_main() -> bool:
    """Rank 0: the process that writes files and registers versions."""
    return rank() == 0


def barrier() -> None:
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
    """This rank's GPU (``LOCAL_RANK``), or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when there are several processes, else ``model`` itself."""
    if world_size() == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
