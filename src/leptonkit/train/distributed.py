"""The process group as the training loop sees it: rank, world size, the device of this rank, DDP or FSDP.

Under ``torchrun`` (``WORLD_SIZE`` > 1) :func:`init_distributed` joins the group (gloo on CPU, NCCL on GPUs); in a
single process every helper answers as rank 0 of 1 and nothing is wrapped.

Two ways to train on several ranks: :func:`wrap` replicates the model (DDP: each rank holds all weights, gradients
and optimiser state), :func:`shard` splits them (FSDP2's ``fully_shard``, one unit per transformer block: each rank
holds 1/N of each and gathers a block's weights just before it runs), for models whose training state does not fit
one device. The sharded model is a copy on the rank's device; the caller's model stays a plain module in CPU memory
that :func:`gather_into` fills with the full weights (to evaluate, checkpoint and register as a single process would).
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator

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


def shard(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A fully sharded copy of ``model`` on ``device`` (FSDP2): each transformer block (the classes the model names
    in ``_no_split_modules``) is one unit, the rest (embeddings, head) the root's. Sharded while still in CPU memory,
    so only this rank's shard reaches the device."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size(),))
    sharded = copy.deepcopy(model).cpu()
    blocks = set(getattr(sharded, "_no_split_modules", None) or [])
    for module in sharded.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    return fully_shard(sharded, mesh=mesh)


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def gather_into(plain: torch.nn.Module, sharded: torch.nn.Module) -> None:
    """Copy the full weights of ``sharded`` into ``plain`` on every rank (a collective: all ranks call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
    with torch.no_grad():
        for name, tensor in plain.state_dict().items():
            if name in full:
                tensor.copy_(full[name])


@contextlib.contextmanager
def no_sync(model: torch.nn.Module) -> Iterator[None]:
    """Accumulate gradients locally (no all-reduce or reduce-scatter) for the micro-steps before an optimiser step."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
    elif is_sharded(model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def local(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor for a sharded result (the gradient norm of a sharded model is a replicated ``DTensor``)."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
