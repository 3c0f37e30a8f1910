"""Unpadded ("packed") encoder batches, as in Hugging Face's text-embeddings-inference: the texts of a dynamic batch
run through the embeddings and every linear layer as one row of their real tokens, without padding.

Why: a batch padded to its longest text spends the linear layers' work (most of an encoder's forward) on padding.
Four short sentences of 8 to 13 tokens, 32 times over, pad to 416 rows for 336 tokens; 32 SST-2 sentences pad to
1,696 rows for 882 tokens.

How, with the model's own modules and two of ``transformers``' extension points:
- A forward pre-hook on the base model (``BertModel`` under a classifier, say) turns the padded ``input_ids`` into
  one row of the real tokens. Each token keeps the position id and token type it had in the padded batch, so the
  embeddings are the same.
- Attention alone needs each text apart. The function registered in ``AttentionInterface`` gathers each text's
  queries, keys and values into a padded block, attends with two batched matmuls, and scatters the result back. The
  block length is rounded up to a multiple of 16: PyTorch's CPU softmax ran 4-6x slower on rows of 13 than on rows
  of 16. Blocks too large for that (long texts) go through SDPA instead.
- A forward hook pads the base model's output again (zeros at padding) and re-runs the pooler, so every head sees
  what it always saw.

Packing is on only inside :func:`packing` (the encoder engine's thread), and only for padded batches of the model
families listed in ``FAMILIES``: their positions are reproduced exactly, and tests check in float32 that each
matches its padded forward. Anything else runs the model unchanged.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
from transformers.modeling_utils import AttentionInterface

from leptonkit.serve.engine.cpu_linear import PackedLinear, bucket

PACKED_ATTENTION = "leptonkit_packed"
FAMILIES = frozenset({"bert", "electra", "roberta", "xlm-roberta", "camembert"})
_BLOCK = 16
_MAX_MATMUL_SCORES = 1 << 22  # attention scores per layer above which SDPA (no full score matrix) takes over

_local = threading.local()


@dataclass(frozen=True)
class _Layout:
    """Where a packed batch's tokens sit: in the padded input, in the packed row, and in attention's blocks."""

    texts: int
    block: int  # attention block length per text
    gather: torch.Tensor  # [texts * block]: the packed row of each block slot (0 for padding slots)
    scatter: torch.Tensor  # [packed rows]: the block slot of each packed row
    key_mask: torch.Tensor  # [texts, block]: True where a slot holds a real token
    tokens: torch.Tensor  # [real tokens]: each real token's index in the flattened padded input
    padded: tuple[int, int]  # the input's (texts, length)
    bias: torch.Tensor | None  # [heads * texts, block, block] additive key mask, or None: attend with SDPA


def packable(model: Any) -> bool:
    """Whether :func:`enable` can pack batches for ``model`` (a ``transformers`` encoder, possibly under peft)."""
    config = _hf_model(model).config
    return (
        config.model_type in FAMILIES
        and not config.is_decoder
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
    )


def enable(model: Any) -> bool:
    """Install packing on ``model`` (once); returns whether it is packable. Outside :func:`packing` it runs as
    before, with SDPA attention."""
    if not packable(model):
        return False
    hf = _hf_model(model)
    encoder = hf.base_model
    if getattr(encoder, "_leptonkit_packing", False):
        return True
    AttentionInterface.register(PACKED_ATTENTION, packed_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_ATTENTION, sdpa_mask)
    hf.set_attn_implementation(PACKED_ATTENTION)
    encoder.register_forward_pre_hook(_pack, with_kwargs=True)
    encoder.register_forward_hook(_unpack, with_kwargs=True)
    encoder._leptonkit_packing = True
    return True


@contextlib.contextmanager
def packing() -> Iterator[None]:
    """Pack the padded batches of enabled models that this thread runs inside the block."""
    _local.active = True
    try:
        yield
    finally:
        _local.active = False
        _local.layout = None


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over a packed row ([1, heads, rows, dim]) text by text; SDPA for anything else."""
    layout: _Layout | None = getattr(_local, "layout", None)
    if layout is None or query.shape[0] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    heads, dim = query.shape[1], query.shape[-1]
    scale = scaling if scaling is not None else dim**-0.5
    shape = (heads, layout.texts, layout.block, dim)

    def blocks(x: torch.Tensor) -> torch.Tensor:  # [heads, texts, block, dim]
        return x[0].index_select(1, layout.gather).view(shape)

    if layout.bias is not None:
        q, k, v = (blocks(x).view(heads * layout.texts, layout.block, dim) for x in (query, key, value))
        scores = torch.baddbmm(layout.bias, q, k.transpose(1, 2), alpha=scale)
        out = torch.bmm(torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype), v)
    else:
        q, k, v = (blocks(x).transpose(0, 1) for x in (query, key, value))
        mask = layout.key_mask[:, None, None, :]
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).transpose(0, 1)
    # [heads, slots, dim] -> the packed rows' [1, rows, heads, dim]
    return out.reshape(heads, -1, dim).transpose(0, 1).index_select(0, layout.scatter).unsqueeze(0), None


def _hf_model(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _pack(encoder: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """Forward pre-hook: a padded batch becomes one row of its real tokens (see the module's docstring)."""
    if not getattr(_local, "active", False) or getattr(_local, "layout", None) is not None:
        return None
    kwargs = dict(kwargs)
    input_ids = args[0] if args else kwargs.get("input_ids")
    mask = kwargs.get("attention_mask")
    if (
        len(args) > 1
        or not isinstance(input_ids, torch.Tensor)
        or input_ids.dim() != 2
        or not isinstance(mask, torch.Tensor)
        or mask.shape != input_ids.shape
        or bool(mask.all())  # nothing to remove
        or any(kwargs.get(name) is not None for name in ("position_ids", "inputs_embeds", "encoder_hidden_states"))
        or kwargs.get("output_attentions")
        or kwargs.get("return_dict") is False
    ):
        return None
    layout, packed = _layout(encoder, input_ids, mask.bool(), kwargs.get("token_type_ids"))
    _local.layout = layout
    kwargs.pop("input_ids", None)
    kwargs["attention_mask"] = None
    return (), kwargs | packed


def _layout(
    encoder: torch.nn.Module, input_ids: torch.Tensor, mask: torch.Tensor, token_type_ids: torch.Tensor | None
) -> tuple[_Layout, dict[str, torch.Tensor]]:
    """The packed batch's layout, and the base model's packed inputs (ids, positions, token types)."""
    texts, length = input_ids.shape
    device = input_ids.device
    tokens = mask.flatten().nonzero().squeeze(1)
    real = tokens.numel()
    uses_packed_linears = any(isinstance(m, PackedLinear) for m in encoder.modules())
    rows = bucket(real) if uses_packed_linears else real  # the packed linears would pad to this anyway
    block = -(-length // _BLOCK) * _BLOCK
    slot = tokens // length * block + tokens % length
    gather = torch.zeros(texts * block, dtype=torch.long, device=device)
    gather[slot] = torch.arange(real, device=device)
    scatter = torch.zeros(rows, dtype=torch.long, device=device)
    scatter[:real] = slot
    key_mask = torch.zeros(texts * block, dtype=torch.bool, device=device)
    key_mask[slot] = True
    key_mask = key_mask.view(texts, block)
    heads = encoder.config.num_attention_heads
    bias = None
    if heads * texts * block * block <= _MAX_MATMUL_SCORES:
        dtype = next(encoder.parameters()).dtype
        bias = torch.zeros(texts, 1, block, dtype=dtype, device=device)
        bias.masked_fill_(~key_mask[:, None, :], torch.finfo(dtype).min)
        bias = bias.expand(texts, block, block).expand(heads, texts, block, block).reshape(-1, block, block)
    layout = _Layout(texts, block, gather, scatter, key_mask, tokens, (texts, length), bias)

    def pack(values: torch.Tensor, fill: int) -> torch.Tensor:
        row = torch.full((1, rows), fill, dtype=values.dtype, device=device)
        row[0, :real] = values.flatten()[tokens]
        return row

    embeddings = encoder.embeddings
    pad_id = getattr(embeddings, "padding_idx", None) or 0
    make_positions = getattr(embeddings, "create_position_ids_from_input_ids", None)  # RoBERTa's family
    positions = (
        make_positions(input_ids, pad_id)
        if make_positions is not None
        else torch.arange(length, device=device).expand(texts, length)
    )
    packed = {"input_ids": pack(input_ids, pad_id), "position_ids": pack(positions, pad_id)}
    if token_type_ids is not None:
        packed["token_type_ids"] = pack(token_type_ids, 0)
    return layout, packed


def _unpack(encoder: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    """Forward hook: the packed output padded again, as the heads expect it, and the pooler re-run on it."""
    layout: _Layout | None = getattr(_local, "layout", None)
    if layout is None:
        return None
    _local.layout = None

    def pad(hidden: torch.Tensor) -> torch.Tensor:
        texts, length = layout.padded
        real = hidden[0, : layout.tokens.numel()]
        flat = hidden.new_zeros(texts * length, hidden.shape[-1])
        return flat.index_copy_(0, layout.tokens, real).view(texts, length, -1)

    output.last_hidden_state = pad(output.last_hidden_state)
    if getattr(output, "hidden_states", None) is not None:
        output.hidden_states = tuple(pad(hidden) for hidden in output.hidden_states)
    if getattr(encoder, "pooler", None) is not None and getattr(output, "pooler_output", None) is not None:
        output.pooler_output = encoder.pooler(output.last_hidden_state)
    return output
