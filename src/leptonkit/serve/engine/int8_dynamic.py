"""W8A8 linear layers on a CPU: int8 weights with one scale per output row and int8 activations with one scale per
token, computed when the layer runs (``models quantize --method w8a8``: torchao's
``Int8DynamicActivationInt8WeightConfig``), through oneDNN's int8 matmul on a prepacked weight: here the
quantisation and the compiled step's form of the layer; the eager layer is
:class:`~leptonkit.serve.engine.cpu_linear.PackedInt8Linear`.

Why not torchao's own linear for these weights: it runs ``torch._int_mm``, which lays the weight out for the kernel
on every call, and its activation quantisation as a dozen small ops. Measured on this machine (AMD EPYC, AVX-512
VNNI, 2 threads), 30 layers of SmolLM2's four projections at 32 rows: torchao's linear 38-43 ms eagerly and 17.8 ms
compiled, against 12.9-13.6 ms for bf16 with prepacked weights (compiled). The matmuls alone, eagerly: oneDNN's int8
one on prepacked weights 7.7 ms against 12.1 ms for bf16's prepacked one (1,600 rows, a prefill: 185 against
361 ms), exact in int32.

The activations enter oneDNN as unsigned bytes offset by 128 (a zero point), because on a CPU without AMX its fast
int8 kernels multiply unsigned by signed bytes (VNNI); the values and scales are torchao's (:func:`quantize_rows`),
so the products are torchao's exactly (int32 sums); only the roundings to bf16 differ. oneDNN's activation scale is
one number, so the matmul runs with scale 1 and each row of its output is multiplied by its token's scale afterwards.

In a compiled step (``serve --compile``) the layer is written in PyTorch's decomposed quantisation ops
(:func:`decomposed_linear`); with ``freezing``, inductor rewrites them into the same prepacked oneDNN call and fuses
the quantisation into the loops around it. The direct form, ``_int_mm`` on int8 activations followed by two scales,
is rewritten too, but into oneDNN's signed-activation kernel, which took 159 ms for one 32 x 576 x 960 product here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch
import torch.ao.quantization.fx._decomposed  # registers torch.ops.quantized_decomposed

log = logging.getLogger(__name__)

QMIN, QMAX, OFFSET = -128, 127, 128  # torchao's int8 range; unsigned values are the signed ones plus OFFSET


def is_dynamic_int8(weight: torch.Tensor) -> bool:
    """Whether ``weight`` is a torchao W8A8 weight this module runs: per-row symmetric int8 weights, per-token
    symmetric activations quantised at run time, nothing else (no pre-scale, no static or reduced range)."""
    kwargs = getattr(weight, "act_quant_kwargs", None)
    if type(weight).__name__ != "Int8Tensor" or kwargs is None:
        return False
    from torchao.quantization.granularity import PerRow
    from torchao.quantization.quant_primitives import MappingType

    return (
        weight.qdata.dim() == 2
        and list(weight.block_size) == [1, weight.shape[1]]
        and isinstance(kwargs.granularity, PerRow)
        and kwargs.mapping_type == MappingType.SYMMETRIC
        and not kwargs.reduce_range
        and not weight.reduce_range
        and weight.act_pre_scale is None
        and weight.act_quant_scale is None
        and (weight.zero_point is None or not weight.zero_point.any())
    )


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` quantised per row as torchao quantises these layers' activations, to the bit: symmetric, the scale
    ``max|x| / 127.5`` computed in ``x``'s dtype, values ``x * (1 / scale)`` rounded and clamped to [-128, 127];
    returned as unsigned bytes (value + 128) and float32 scales ``[..., 1]``."""
    # rounded to x's dtype as torchao's division rounds it (compiled, only with inductor's emulate_precision_casts)
    scales = (x.abs().amax(-1, keepdim=True).float() / ((QMAX - QMIN) / 2)).to(x.dtype).float()
    scales = scales.clamp(min=torch.finfo(torch.float32).eps)
    values = torch.clamp(torch.round(x * (1.0 / scales)), QMIN, QMAX) + OFFSET
    return values.to(torch.uint8), scales


@functools.cache
def row_quantizer(dtype: torch.dtype) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """:func:`quantize_rows` compiled by inductor into two loops (or as it is where it cannot be compiled).

    Eagerly it is eight passes over the rows: in a 2,000-token SmolLM2 prefill they took about 450 ms of 1.06 s, the
    int8 matmuls 270 ms (profiled here); compiled, one such call took 0.14 ms against 0.51 ms.
    """
    examples = [(torch.zeros(rows, 64, dtype=dtype),) for rows in (1, 2)]
    return _compiled(quantize_rows, examples, "the int8 activations' quantisation", emulate_precision_casts=True)


def scale_rows(out: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``out`` (``[rows, n]``, the int8 matmul's bf16 output) times its rows' float32 ``scales``, in place: the
    product in float32, rounded once to ``out``'s dtype."""
    return out.mul_(scales)


@functools.cache
def row_scaler(dtype: torch.dtype) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """:func:`scale_rows` compiled by inductor into one loop (or as it is where it cannot be compiled), with the same
    rounding. Eagerly, a bf16 tensor times float32 scales goes through a float32 copy of the whole tensor: measured
    here on a prefill's 2,000 x 3,072 output, 14.4 ms against 0.21 ms compiled (2,000 x 960: 3.9 against 0.10 ms).
    """
    examples = [(torch.zeros(rows, 64, dtype=dtype), torch.ones(rows, 1)) for rows in (1, 2)]
    return _compiled(scale_rows, examples, "the int8 matmuls' row scaling")


def _compiled(function: Callable, examples: list[tuple], purpose: str, **options: bool) -> Callable:
    """``function`` compiled by inductor for any shape and run on ``examples`` (one graph for one row, PyTorch's
    specialisation, and one for more), or ``function`` itself where it cannot be compiled (no C++ compiler)."""
    compiled = torch.compile(function, dynamic=True, options=options)
    try:
        with torch.inference_mode():
            for args in examples:
                compiled(*args)
    except Exception as err:  # no C++ compiler, an unsupported op: the eager function gives the same values
        log.warning("running %s eagerly: %s: %s", purpose, type(err).__name__, err)
        return function
    return compiled


def row_scales(weight: torch.Tensor) -> torch.Tensor:
    """A W8A8 weight's scales as a float32 vector, one per output row."""
    return weight.scale.reshape(-1).float().contiguous()


def decomposed_linear(
    x: torch.Tensor, values: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """The W8A8 linear layer in PyTorch's decomposed quantisation ops, the form inductor's freezing turns into a
    prepacked oneDNN call (``values``: the int8 weight; ``zeros``: int64 zeros, one per output row)."""
    decomposed = torch.ops.quantized_decomposed
    activations, token_scales = quantize_rows(x)
    inputs = decomposed.dequantize_per_tensor.default(activations, 1.0, OFFSET, 0, 255, torch.uint8)
    weight = decomposed.dequantize_per_channel.default(values, scales, zeros, 0, QMIN, QMAX, torch.int8)
    out = torch.nn.functional.linear(inputs, weight) * token_scales
    return (out if bias is None else out + bias).to(x.dtype)


def available() -> bool:
    """oneDNN's int8 matmul is built into PyTorch's x86 CPU builds."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")
