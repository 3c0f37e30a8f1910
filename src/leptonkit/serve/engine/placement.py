"""Where the native engine's model runs: on one device when it fits, split across several when it does not.

The split is accelerate's big-model inference: a device map assigns each module (the embeddings, each decoder
layer, the final norm and head) to a device, and :func:`dispatch` moves the weights there and hooks every mapped
module so that its inputs move to its device before it runs and the model's output comes back to the caller's
device. The layers run one device after another (pipeline placement, not tensor parallelism: one device works at
a time); the KV cache of each layer stays on that layer's device (``kv_cache.SlabLayer``). The engine's fused
decoder calls layers' parts directly, past the hooks, so a split model takes the generic ``transformers`` forward.

On GPU machines :func:`place` asks accelerate for the map (``infer_auto_device_map``: GPU 0 first, then the next
GPU, then CPU memory); a model that fits GPU 0 gets the one-entry map ``{"": 0}`` and moves there whole, without
hooks. For tensor or pipeline parallelism on several GPUs at once, serve with ``--engine vllm``.
"""

from __future__ import annotations

from typing import Any

import torch


def place(model: Any) -> Any:
    """Put ``model`` on the GPUs (one, or split across several and CPU memory when it does not fit one)."""
    from accelerate import infer_auto_device_map

    return dispatch(model, infer_auto_device_map(model, no_split_module_classes=model._no_split_modules))


def dispatch(model: Any, device_map: dict[str, int | str | torch.device]) -> Any:
    """Place ``model``'s modules as ``device_map`` says. A map of several groups is hooked even when the groups share
    a device, so the split path runs the same on one CPU as across GPUs; a one-entry map just moves the model."""
    from accelerate import dispatch_model

    return dispatch_model(
        model,
        device_map,
        skip_keys=getattr(model, "_skip_keys_device_placement", None),  # the KV cache stays where each layer keeps it
        force_hooks=len(device_map) > 1,
    )


def is_split(model: Any) -> bool:
    """True when accelerate's hooks move activations between the model's module groups."""
    return any(hasattr(module, "_hf_hook") for module in model.modules())


def input_device(model: Any) -> torch.device:
    """Where the engine puts input ids and masks: the device of the map's first group (the embeddings), or of the
    first parameter for a model that was not dispatched."""
    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        first = next(iter(device_map.values()))
        return torch.device(f"cuda:{first}" if isinstance(first, int) else first)
    return next(model.parameters()).device
