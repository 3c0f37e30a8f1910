"""bf16 and W8A8 linear layers with oneDNN-prepacked weights, for decoding on a CPU (W8A8's quantisation:
:mod:`~leptonkit.serve.engine.int8_dynamic`).

PyTorch's bf16 ``F.linear`` on a CPU reorders the weight into oneDNN's blocked layout on every call. Decoding runs
every linear layer once per token, so that reorder is paid per token: measured on this machine (AVX-512 bf16), a
17M Llama's one-sequence decode step went from 7.2 to 5.2 ms and a 32-sequence step from 14.2 to 11.9 ms with the
weights packed once, with identical outputs. This is the same oneDNN op that ``torch.compile`` (inductor) emits for
CPU linears; here it is used without a compile step, so start-up stays fast.

oneDNN also compiles and caches a kernel for every new number of input rows, and a server sees a new one with
nearly every prefill (rows x prompt length) or encoder batch: resident memory grew without end in a soak test, by
about 0.6 MB per new shape (bf16), and by 0.8 MB per new row count for two W8A8 layers (1,000-1,399 rows, dev). Rows
are therefore padded up to one of eight sizes per power of two (at most 12.5% more rows), which bounds the shapes
compiled, in both layers.

The packed copy sits beside the original weight, which peft (LoRA wraps these layers) and ``state_dict`` still use;
with autograd on (explanations take gradients through served encoders) a layer runs the plain ``F.linear``.
Weights changed in place later (a merged adapter) would not reach the copy.
"""

from __future__ import annotations

import torch

from leptonkit.serve.engine import int8_dynamic


class _Prepacked(torch.nn.Linear):
    """An ``nn.Linear`` whose forward uses a prepacked copy of its weight (``packed``), made on first use.

    Copies and pickles leave the packed copy out (oneDNN's opaque tensors have no storage to copy) and pack again.
    """

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        return {key: value for key, value in state.items() if key != "packed"}


class PackedLinear(_Prepacked):
    """A bf16 layer: oneDNN's bf16 matmul on the packed weight, its rows padded to a :func:`bucket`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the oneDNN op has no backward, and inductor cannot lower it on the opaque packed tensor: a compiled step
        # (serve --compile) gets the plain linear, which inductor packs itself (freezing)
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return super().forward(x)
        packed = self.__dict__.get("packed")
        if packed is None:
            packed = self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), 1)
        rows = x.reshape(-1, x.shape[-1])
        out = torch.ops.mkldnn._linear_pointwise(padded(rows), packed, self.bias, "none", [], "")
        return out[: rows.shape[0]].reshape(*x.shape[:-1], out.shape[-1])


class PackedInt8Linear(_Prepacked):
    """A layer with a torchao W8A8 weight: its activations quantised as torchao does
    (:func:`~leptonkit.serve.engine.int8_dynamic.row_quantizer`), then oneDNN's int8 matmul on the packed weight;
    with autograd on, or while compiling, torchao's own linear runs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return super().forward(x)
        packed = self.__dict__.get("packed")
        if packed is None:
            scales = int8_dynamic.row_scales(self.weight)
            zeros = torch.zeros(scales.shape, dtype=torch.long)
            packed = self.packed = (torch.ops.onednn.qlinear_prepack(self.weight.qdata, None), scales, zeros)
        values, token_scales = int8_dynamic.row_quantizer(x.dtype)(x.reshape(-1, x.shape[-1]))
        offset = int8_dynamic.OFFSET  # padding rows hold it: zeros
        # in the input's dtype, each row then scaled in place: a float32 output took a prefill's 2,000 x 576 x 3072
        # product from 3.7 to 5.6 ms, and its scaling and cast 0.8 ms more, against 7.0 ms for bf16 (measured here)
        out = torch.ops.onednn.qlinear_pointwise(
            padded(values, offset), 1.0, offset, *packed, None, 1.0, 0, x.dtype, "none", [], ""
        )
        out = out[: values.shape[0]]
        int8_dynamic.row_scaler(x.dtype)(out, token_scales)  # in float32, rounded once more
        if self.bias is not None:
            out += self.bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


def pack_linears(model: torch.nn.Module) -> int:
    """Turn the model's bf16 CPU ``nn.Linear`` layers into :class:`PackedLinear` and its W8A8 ones into
    :class:`PackedInt8Linear`; returns how many there were."""
    bf16, int8 = _available(), int8_dynamic.available()
    count = 0
    for module in model.modules():
        if type(module) is not torch.nn.Linear or not module.weight.is_cpu:
            continue
        if bf16 and plain_weight(module) and module.weight.dtype == torch.bfloat16:
            module.__class__ = PackedLinear
        elif int8 and int8_dynamic.is_dynamic_int8(module.weight.data):
            module.__class__ = PackedInt8Linear
            int8_dynamic.row_quantizer(module.weight.dtype)  # compiled now, not in the first request
            int8_dynamic.row_scaler(module.weight.dtype)
        else:
            continue
        count += 1
    return count


def plain_weight(module: torch.nn.Module) -> bool:
    """Whether the layer's weight is a plain tensor: a quantised one (a torchao tensor subclass, ``leptonkit models
    quantize``) runs its own kernel and cannot be packed here."""
    return type(module.weight.data) is torch.Tensor


def padded(rows: torch.Tensor, value: float = 0) -> torch.Tensor:
    """``rows`` (2-D) with rows of ``value`` appended up to :func:`bucket` of their count (oneDNN caches a kernel
    per row count)."""
    count = rows.shape[0]
    if bucket(count) == count:
        return rows
    return torch.nn.functional.pad(rows, (0, 0, 0, bucket(count) - count), value=value)


def bucket(rows: int) -> int:
    """``rows`` rounded up to one of eight sizes per power of two (exact up to 16 rows)."""
    if rows <= 16:
        return rows
    step = 1 << (rows.bit_length() - 4)
    return -(-rows // step) * step


def _available() -> bool:
    """oneDNN's packed bf16 linear runs only where the CPU has bf16 instructions (AVX-512 BF16, AMX or
    AVX-NE-CONVERT); elsewhere (an AVX2-only CPU) the reorder raises, and the plain ``F.linear`` is used."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
