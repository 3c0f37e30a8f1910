"""The native engine's batched KV cache and its decode-step attention, both plugged into ``transformers``' own
extension points (a ``Cache`` subclass and ``AttentionInterface``), so any full-attention causal LM runs unchanged.

Why not ``DynamicCache`` and SDPA as they are: measured on a 17M Llama at 32 sequences on this CPU, a decode step
spent 20% of its time in ``DynamicCache``'s ``torch.cat`` (it copies the whole cache every token) and PyTorch's CPU
flash-attention kernel took 6x longer than two plain matmuls for a one-token query. Here each layer's keys and
values live in a preallocated slab that grows in steps (appending a token writes one column), and one-token
queries use matmul + softmax + matmul with grouped-query heads folded into the matmul. Prompts (prefill) still use
SDPA, whose kernel is the fast one for long queries.

On a CPU the eager engine keeps the cache in float32 whatever the model's dtype: bf16 matmuls go through oneDNN,
which compiles and caches a kernel for every new shape, and attention shapes change with every batch size and cache
length: a soak test grew by 37% in 10 minutes that way. float32 matmuls (MKL) keep no such cache and were as fast or
faster here (a one-sequence attention 24 us instead of 68 us). A cache in a 16-bit dtype on a CPU (``serve
--compile``, see ``compiled_step``) is read without matmuls, as a broadcast multiply and sum (:func:`cached_scores`,
:func:`weighted_values`), so no kernel is cached per shape either.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
from transformers.modeling_utils import AttentionInterface

DECODE_ATTENTION = "leptonkit_decode"
_GROWTH = 32  # columns added when the cache is full


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA for prompts; for one-token queries, matmuls with a boolean (True = attend) or additive mask.

    Computed in the cache's dtype (float32 on a CPU, see the module's docstring); the output has the query's.
    """
    dtype = query.dtype
    query = query.to(key.dtype)
    if query.shape[2] != 1 or dropout or any(kwargs.get(k) is not None for k in ("softcap", "position_bias", "s_aux")):
        out, weights = sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
        return out.to(dtype), weights
    bias = attention_bias(attention_mask, key.shape[1], query.shape[1] // key.shape[1], key.dtype)
    return one_token_attention(query, key, value, bias, scaling).to(dtype), None


def attention_bias(mask: torch.Tensor | None, kv_heads: int, groups: int, dtype: torch.dtype) -> torch.Tensor | None:
    """A one-token step's mask ([rows, 1, 1, columns], boolean True = attend, or additive) as the additive
    ``[rows x kv_heads, groups, columns]`` bias that :func:`one_token_attention` adds; a step makes it once."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
    rows, columns = mask.shape[0], mask.shape[-1]
    return mask.to(dtype).expand(rows, kv_heads, groups, columns).reshape(rows * kv_heads, groups, columns)


def one_token_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | None, scaling: float | None
) -> torch.Tensor:
    """Attention of one-token queries ([rows, heads, 1, dim], in the cache's dtype) as two batched matmuls, each
    key/value head's query heads folded into one matmul; returns [rows, 1, heads, dim]."""
    rows, heads, _, dim = query.shape
    kv_heads, columns = key.shape[1], key.shape[2]
    query = query.reshape(rows * kv_heads, heads // kv_heads, dim)
    scale = scaling if scaling is not None else dim**-0.5
    keys, values = key.view(rows * kv_heads, columns, dim), value.view(rows * kv_heads, columns, dim)
    if key.device.type == "cpu" and key.dtype != torch.float32:  # no oneDNN matmul: see the module's docstring
        scores = cached_scores(query, keys) * scale
        probs = torch.softmax(scores if bias is None else scores + bias, dim=-1)
        return weighted_values(probs, values).to(query.dtype).view(rows, 1, heads, dim)
    keys = keys.transpose(1, 2)
    scores = torch.bmm(query, keys) * scale if bias is None else torch.baddbmm(bias, query, keys, alpha=scale)
    probs = torch.softmax(scores, dim=-1)
    return torch.bmm(probs, values).view(rows, 1, heads, dim)


def cached_scores(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Queries ``[n, groups, dim]`` against cached keys ``[n, columns, dim]``: float32 dot products
    ``[n, groups, columns]``. Inductor turns the broadcast multiply and sum into one loop that reads the cache once."""
    return (query.float()[:, :, None, :] * keys[:, None]).sum(-1)


def weighted_values(probs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Attention weights ``[n, groups, columns]`` (float32) over cached values ``[n, columns, dim]``: float32
    ``[n, groups, dim]``."""
    return (probs[..., None] * values[:, None]).sum(-2)


def use_decode_attention(model: torch.nn.Module) -> None:
    """Switch a loaded model (or the base under a peft wrapper) to :func:`decode_attention`."""
    AttentionInterface.register(DECODE_ATTENTION, decode_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(DECODE_ATTENTION, sdpa_mask)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.set_attn_implementation(DECODE_ATTENTION)


class SlabLayer(DynamicLayer):
    """A full-attention layer cache whose keys and values sit at the start of larger, zero-filled slabs.

    ``update`` returns the whole slabs: a matmul reads a contiguous slab without copying it, where a bf16 matmul on a
    sliced view first copies it (as slow as ``DynamicCache``'s ``cat``). The columns past ``length`` are zeros that
    the caller masks out (:meth:`BatchCache.decode_mask` covers the whole capacity).
    """

    def __init__(self, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dtype = dtype  # None: the dtype of the states cached
        self.length = 0
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    @property
    def capacity(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[2]
        if end > self.capacity:
            self.reserve(end, like=(key_states, value_states))
        self.keys[:, :, self.length : end] = key_states
        self.values[:, :, self.length : end] = value_states
        self.length = end
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def reserve(self, capacity: int, like: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Grow the slabs to ``capacity`` columns, keeping the cached ones."""
        keys, values = like if self.keys is None else (self.keys, self.values)
        dtype = self.dtype or keys.dtype
        self.keys = _grown(keys, self.length, capacity, dtype)
        self.values = _grown(values, self.length, capacity, dtype)
        self.is_initialized, self.device = True, self.keys.device

    def adopt(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Take exactly these cached columns (after a join or a drop)."""
        self.keys, self.values, self.length = keys, values, keys.shape[2]
        self.is_initialized, self.device = True, keys.device

    def cached(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]


def _grown(tensor: torch.Tensor, length: int, capacity: int, dtype: torch.dtype) -> torch.Tensor:
    batch, heads, _, dim = tensor.shape
    grown = tensor.new_zeros(batch, heads, capacity, dim, dtype=dtype)
    grown[:, :, :length] = tensor[:, :, :length]
    return grown


class BatchCache(Cache):
    """The running batch's cache: rows right-aligned on a shared column index, padding on the left.

    ``valid`` marks the real (non-padding) columns of each row; :meth:`decode_mask` extends it by the column the next
    token will fill and returns it over the slabs' whole capacity, in the 4-D shape ``transformers`` passes through
    untouched. Capacity grows in steps of ``_GROWTH`` columns, so a step copies the cache once every ``_GROWTH``
    tokens instead of every token, and attention reads at most ``_GROWTH - 1`` masked columns.
    """

    def __init__(self, num_layers: int, dtype: torch.dtype | None = None) -> None:
        super().__init__(layers=[SlabLayer(dtype) for _ in range(num_layers)])
        self._valid: torch.Tensor | None = None

    @property
    def columns(self) -> int:
        return self.layers[0].length

    @property
    def valid(self) -> torch.Tensor:
        return self._valid[:, : self.columns]

    def set_valid(self, mask: torch.Tensor) -> None:
        """After a prefill: the 2-D attention mask (1 = token, 0 = padding) of the prompts just cached."""
        self._valid = mask.bool()

    def decode_mask(self) -> torch.Tensor:
        """[rows, 1, 1, capacity]: the mask for a one-token step, the new token's column included."""
        column = self.columns
        if column + 1 > self._valid.shape[1]:
            capacity = column + _GROWTH
            for layer in self.layers:
                layer.reserve(capacity)
            valid = self._valid.new_zeros(self._valid.shape[0], capacity)
            valid[:, :column] = self.valid
            self._valid = valid
        self._valid[:, column] = True
        return self._valid[:, None, None, :]

    def join(self, other: BatchCache) -> None:
        """Append ``other``'s rows, left-padding whichever side is shorter."""
        total = max(self.columns, other.columns)
        valid = torch.cat([_left_pad_2d(self.valid, total), _left_pad_2d(other.valid, total)])
        for mine, theirs in zip(self.layers, other.layers, strict=True):
            (k1, v1), (k2, v2) = mine.cached(), theirs.cached()
            mine.adopt(
                torch.cat([_left_pad(k1, total), _left_pad(k2, total)]),
                torch.cat([_left_pad(v1, total), _left_pad(v2, total)]),
            )
        self._valid = valid

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` and drop the leading columns that are padding in all of them."""
        valid = self.valid[rows]
        first = int(valid.any(dim=0).nonzero()[0])
        for layer in self.layers:
            keys, values = layer.cached()
            kept = rows.to(keys.device)  # a split model's layers keep their cache on their own devices
            layer.adopt(keys[kept, :, first:], values[kept, :, first:])
        self._valid = valid[:, first:]


def _left_pad(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Pad a [batch, heads, seq, dim] cache tensor on the left of its sequence axis to ``length``."""
    return torch.nn.functional.pad(tensor, (0, 0, length - tensor.shape[2], 0))


def _left_pad_2d(mask: torch.Tensor, length: int) -> torch.Tensor:
    return torch.nn.functional.pad(mask, (length - mask.shape[1], 0), value=False)
