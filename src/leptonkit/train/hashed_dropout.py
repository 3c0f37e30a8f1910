"""Dropout for CPU training with masks from a counter-based hash, drawn on every core.

Why: ATen draws a CPU dropout mask with ``bernoulli_``, one element at a time on one thread (its vectorised MKL path
runs on Intel CPUs only). Measured on a 2-core AMD EPYC (Zen 5), one (32, 32, 384) bf16 activation: ``F.dropout``
1.8 ms forward, 1.9 ms with its backward, of which the mask is 1.7 ms; a MiniLM fine-tuning step makes 20 such
calls. Scaled dot-product attention with ``dropout_p > 0`` runs ATen's math path with the same serial draw.

Here one 64-bit hash (``splitmix64``'s finaliser) of ``seed + w`` xor a key gives the keep bits of four elements,
``4w`` to ``4w + 3``: each takes 16 bits of it, compared with ``p`` (2**-16 resolution), computed with in-place integer
tensor ops that ATen vectorises and spreads over the cores. The mask of the activation above takes 0.6 ms against
``bernoulli_``'s 1.7 ms in the same run (forward and backward 1.2 ms against 1.9-2.2 ms), measured with the 32-bit hash
this replaced (``lowbias32``, one hash and 24 bits an element); the 64-bit hash reads and writes half the bytes of
that one and hashes a quarter of the words: a (32, 14, 384) mask took 107 us against 222 us, a (32, 12, 14, 14)
attention mask 71 against 86 (dev micro-benchmark, 2-core AMD EPYC Zen 5). The output is ATen's
``native_dropout_backward(x, mask, 1 / (1 - p))``, which keeps a one-byte mask for backward, as
``torch.native_dropout`` does. Attention with dropout runs the math of ATen's path (scores, mask, float32 softmax,
dropout, values) with this dropout. Plain eager ops: nothing compiles, so there is no setup cost and no compiler
needed. Each call's seed and key come from torch's default generator, so ``torch.manual_seed`` reproduces a run, as
it does with ATen's masks (the masks themselves differ from ATen's).

:func:`hashed_dropout` routes ``F.dropout`` (``nn.Dropout``), ``torch.native_dropout`` (the LoRA layers'
:class:`~leptonkit.train.methods.MaskDropout`) and ``F.scaled_dot_product_attention`` calls with dropout on CPU
tensors here, through a ``TorchFunctionMode``; every other call, and every call on another device, runs unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

MAX_ELEMENTS = 2**30  # larger tensors stay with ATen: their hash words alone would take 2 GB
SEEDS = 2**30
LANES = 4  # 16-bit lanes of one 64-bit hash: one element's keep bit each


def _signed64(value: int) -> int:
    return value - 2**64 if value >= 2**63 else value


MIX = (_signed64(0xBF58476D1CE4E5B9), _signed64(0x94D049BB133111EB))  # splitmix64's multipliers, as int64


def keep_mask(shape: torch.Size, seed: int, key: int, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bernoulli(1 - p) keep bits: element ``i`` is lane ``i % 4`` (16 bits, in memory order) of splitmix64's
    finaliser of ((seed + i // 4) xor ``key``), kept when that lane, read as a signed int16 ``s``, has
    ``s + 2**15 >= p * 2**16`` (``s + 2**15`` is uniform on 0 to 2**16 - 1).

    The key sends each call's run of words to its own scattered inputs, so two calls whose seeds are less than a
    tensor's size apart do not draw shifted copies of one mask. The hash wants products modulo 2**64: int64 tensor
    products wrap (ATen multiplies in two's complement), and the masked right shifts are logical shifts."""
    elements = shape.numel()
    z = torch.arange(seed, seed + -(-elements // LANES), dtype=torch.int64, device=device)
    z.bitwise_xor_(key)
    z.bitwise_xor_(z.bitwise_right_shift(30).bitwise_and_(2**34 - 1))
    z.mul_(MIX[0])
    z.bitwise_xor_(z.bitwise_right_shift(27).bitwise_and_(2**37 - 1))
    z.mul_(MIX[1])
    z.bitwise_xor_(z.bitwise_right_shift(31).bitwise_and_(2**33 - 1))
    return (z.view(torch.int16)[:elements] >= round(p * 2**16) - 2**15).view(shape)


class MaskedScale(torch.autograd.Function):
    """``x * mask * scale``, keeping the one-byte mask for backward (as :class:`~leptonkit.train.methods.MaskDropout`
    does); ATen's ``native_dropout_backward`` computes exactly this, so it serves both directions."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return torch.ops.aten.native_dropout_backward(x, mask, scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        return torch.ops.aten.native_dropout_backward(grad, mask, ctx.scale), None, None


def draw_keys() -> tuple[int, int]:
    """A call's seed (below :data:`SEEDS`) and 32-bit key (a signed int32), from torch's default generator."""
    seed = int(torch.randint(0, SEEDS, ()))
    key = int(torch.randint(-(2**31), 2**31, (), dtype=torch.int64))
    return seed, key


def dropout(x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Dropout of ``x`` with a :func:`keep_mask` seeded from torch's default generator: (output, mask), as
    ``torch.native_dropout`` returns them."""
    seed, key = draw_keys()
    mask = keep_mask(x.shape, seed, key, p, x.device)
    return MaskedScale.apply(x, mask, 1.0 / (1.0 - p)), mask


def attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    p: float,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """ATen's math attention with :func:`dropout` on the probabilities; rows with every key masked give 0."""
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if causal:
        rows, columns = scores.shape[-2:]
        allowed = torch.ones(rows, columns, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~allowed, -torch.inf)
    if mask is not None:
        scores = scores.masked_fill(~mask, -torch.inf) if mask.dtype == torch.bool else scores + mask
    probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32).nan_to_num(0.0).to(value.dtype)
    return torch.matmul(dropout(probabilities, p)[0], value)


def _applies(tensor: torch.Tensor, p: float) -> bool:
    cpu = tensor.device.type == "cpu" and tensor.is_floating_point()
    return cpu and 0.0 < p < 1.0 and tensor.numel() <= MAX_ELEMENTS


class _HashedDropoutMode(TorchFunctionMode):
    """Sends CPU dropout, plain and inside attention, to :func:`dropout`; see the module docstring."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.dropout:
            return self._dropout(func, *args, **kwargs)
        if func is torch.native_dropout:
            return self._native_dropout(func, *args, **kwargs)
        if func is F.scaled_dot_product_attention:
            return self._attention(func, *args, **kwargs)
        return func(*args, **kwargs)

    @staticmethod
    def _dropout(
        func: Any, input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
    ) -> torch.Tensor:
        if training and not inplace and _applies(input, p):
            return dropout(input, float(p))[0]
        return func(input, p, training, inplace)

    @staticmethod
    def _native_dropout(
        func: Any, input: torch.Tensor, p: float, train: bool | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if train is not False and _applies(input, p):
            return dropout(input, float(p))
        return func(input, p, train)

    @staticmethod
    def _attention(
        func: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        enable_gqa: bool = False,
    ) -> torch.Tensor:
        score_elements = query.shape[:-1].numel() * key.shape[-2]
        if not _applies(query, dropout_p) or query.dim() != 4 or score_elements > MAX_ELEMENTS:
            return func(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
        if enable_gqa and key.shape[1] != query.shape[1]:
            groups = query.shape[1] // key.shape[1]
            key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
        return attention(query, key, value, attn_mask, float(dropout_p), is_causal, scale)


@contextlib.contextmanager
def hashed_dropout(enabled: bool = True) -> Iterator[None]:
    """Within the block, CPU dropout draws hashed masks (``enabled=False``: ATen's, unchanged)."""
    if not enabled:
        yield
        return
    with _HashedDropoutMode():
        yield
