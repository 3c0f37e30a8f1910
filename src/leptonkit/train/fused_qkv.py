"""BERT-family self-attention computing its query, key and value projections as one matrix multiplication.

``transformers``' BERT self-attention runs three linear layers on the same input. Under autocast each one casts that
input to bf16 again, and in the backward pass each one yields its own input gradient, cast back to float32 and
summed. Here the three weights (and biases) are concatenated on every call, so one wider matmul does the work: one
input cast, one input-gradient matmul and cast, no sums. The weights stay the model's own parameters (the
concatenation's backward hands each its slice of the gradient), so state dict, optimiser and checkpoints are
untouched. The outputs are the same; the input gradient is summed inside one matmul instead of across three
rounded ones, so it differs at the precision's rounding (in bf16, it is rounded once instead of three times).

Applies to self-attention modules whose three projections are plain ``nn.Linear`` (a LoRA-wrapped projection keeps
the module's own forward). The change is a ``forward`` set on each instance inside :func:`fused_qkv` and removed
after it.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from typing import Any

import torch

SELF_ATTENTION = frozenset(
    {
        "BertSelfAttention",
        "RobertaSelfAttention",
        "XLMRobertaSelfAttention",
        "CamembertSelfAttention",
        "ElectraSelfAttention",
    }
)
PROJECTIONS = ("query", "key", "value")


def _fusable(module: torch.nn.Module) -> bool:
    if type(module).__name__ not in SELF_ATTENTION:
        return False
    parts = [getattr(module, name, None) for name in PROJECTIONS]
    return all(type(p) is torch.nn.Linear for p in parts) and len({p.bias is None for p in parts}) == 1


def fused_modules(model: torch.nn.Module) -> int:
    """How many of ``model``'s self-attention modules :func:`fused_qkv` changes."""
    return sum(_fusable(m) for m in model.modules())


@contextlib.contextmanager
def fused_qkv(model: torch.nn.Module) -> Iterator[int]:
    """Within the block, ``model``'s BERT-family self-attention modules project once; yields how many."""
    modules = [m for m in model.modules() if _fusable(m)]
    for module in modules:
        module.forward = types.MethodType(_fused_forward, module)
    try:
        yield len(modules)
    finally:
        for module in modules:
            del module.forward


def _fused_forward(
    module: torch.nn.Module,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    cache: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    """``BertSelfAttention.forward`` (transformers 5) with the three projections as one."""
    from transformers.cache_utils import EncoderDecoderCache

    parts = [getattr(module, name) for name in PROJECTIONS]
    weight = torch.cat([p.weight for p in parts])
    bias = None if parts[0].bias is None else torch.cat([p.bias for p in parts])
    input_shape = hidden_states.shape[:-1]
    projected = torch.nn.functional.linear(hidden_states, weight, bias)
    query, key, value = (
        part.view(*input_shape, -1, module.attention_head_size).transpose(1, 2)
        for part in projected.split([p.out_features for p in parts], dim=-1)
    )
    if cache is not None:
        current = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        key, value = current.update(key, value, module.layer_idx, kwargs=kwargs)
    out, weights = attend(module, query, key, value, attention_mask, **kwargs)
    return out.reshape(*input_shape, -1).contiguous(), weights


def attend(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    """Attention of a BERT-family self-attention ``module`` over these heads, as its own forward runs it: the function
    its config names (its family's eager one by default), its dropout while training, its scaling."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    eager = sys.modules[type(module).__module__].eager_attention_forward  # each family's own copy
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(module.config._attn_implementation, eager)
    dropout = module.dropout.p if module.training else 0.0
    return attention(module, query, key, value, attention_mask, dropout=dropout, scaling=module.scaling, **kwargs)
