"""W8A8 linear layers (``models quantize --method w8a8``) in the serving engine: torchao's weights, its activation
quantisation, and oneDNN's int8 matmul on prepacked weights (``serve.engine.int8_dynamic``)."""

from __future__ import annotations

import copy

import pytest
import torch

from leptonkit.serve.engine.cpu_linear import PackedInt8Linear, bucket, pack_linears
from leptonkit.serve.engine.int8_dynamic import (
    OFFSET,
    decomposed_linear,
    is_dynamic_int8,
    quantize_rows,
    row_quantizer,
    row_scaler,
    row_scales,
    scale_rows,
)

torchao = pytest.importorskip("torchao")
from torchao.quantization import (  # noqa: E402
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    quantize_,
)


def _layers(config, bias: bool = True) -> torch.nn.Sequential:
    torch.manual_seed(0)
    layers = torch.nn.Sequential(
        torch.nn.Linear(96, 160, bias=bias, dtype=torch.bfloat16), torch.nn.Linear(160, 48, dtype=torch.bfloat16)
    )
    quantize_(layers, config)
    return layers.eval()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_activations_are_quantised_as_torchao_quantises_them_compiled_or_not():
    from torchao.quantization import Int8Tensor, PerRow

    x = torch.randn(9, 96, dtype=torch.bfloat16) * torch.linspace(0.01, 30, 9, dtype=torch.bfloat16)[:, None]
    x[4] = 0  # an all-zero row: the smallest scale, no division by zero
    values, scales = quantize_rows(x)
    theirs = Int8Tensor.from_hp(x, PerRow())
    assert all(torch.equal(a, b) for a, b in zip(row_quantizer(x.dtype)(x), (values, scales), strict=True))
    assert values.dtype == torch.uint8 and scales.dtype == torch.float32
    assert torch.equal(values.int() - OFFSET, theirs.qdata.int())
    assert torch.equal(scales, theirs.scale.float())
    assert values[4].eq(OFFSET).all()


@pytest.mark.parametrize("rows", [1, 300])
def test_compiled_row_scaling_rounds_as_eager_in_place_scaling_does(rows):
    torch.manual_seed(0)
    out = torch.randn(rows, 960, dtype=torch.bfloat16) * 40
    scales = torch.linspace(1, 2, rows)[:, None] / 3  # not bf16 numbers
    expected = scale_rows(out.clone(), scales)
    assert not torch.equal(expected, (out * scales.bfloat16()))  # the float32 product is not the bf16 one
    scaled = out.clone()
    assert row_scaler(torch.bfloat16)(scaled, scales) is not None
    assert torch.equal(scaled, expected)  # in place, bit for bit


def test_only_w8a8_weights_are_recognised():
    assert is_dynamic_int8(_layers(Int8DynamicActivationInt8WeightConfig())[0].weight.data)
    assert not is_dynamic_int8(_layers(Int8WeightOnlyConfig())[0].weight.data)  # weight-only: no activation scheme
    assert not is_dynamic_int8(torch.nn.Linear(4, 4).weight.data)


@pytest.mark.parametrize("bias", [True, False])
def test_packed_layers_compute_torchaos_w8a8_linear_through_onednn(bias):
    """A packed layer and the decomposed form (what a compiled step runs) compute the quantised product exactly and
    round it to bf16 (three times for the packed layer: oneDNN's bf16 output, its token scale, its bias), for 1-D to 3-D
    batches; two layers in turn stay within 2% of torchao's own two (its roundings differ: an activation a rounding
    apart can land on the next int8 value in the second layer). ``pack_linears`` packs W8A8 layers only."""
    layers = _layers(Int8DynamicActivationInt8WeightConfig(), bias=bias)
    packed = copy.deepcopy(layers)
    assert pack_linears(packed) == 2
    assert all(type(layer) is PackedInt8Linear for layer in packed)
    assert pack_linears(_layers(Int8WeightOnlyConfig())) == 0
    first, zeros = layers[0], torch.zeros(160, dtype=torch.long)
    with torch.inference_mode():
        for shape in [(1, 96), (3, 5, 96), (300, 96)]:
            x = torch.randn(shape, dtype=torch.bfloat16)
            values, scales = quantize_rows(x)
            exact = (values.double() - OFFSET) @ first.weight.qdata.double().t()
            exact = exact * scales.double() * row_scales(first.weight).double()
            if bias:
                exact += first.bias.double()
            decomposed = decomposed_linear(x, first.weight.qdata, row_scales(first.weight), zeros, first.bias)
            assert packed[0](x).shape == decomposed.shape == (*shape[:-1], 160)
            assert packed[0](x).dtype == decomposed.dtype == torch.bfloat16
            assert _relative(decomposed, exact) < 2**-9  # one bf16 rounding
            assert _relative(packed[0](x), exact) < 3 * 2**-9
            assert _relative(packed(x), layers(x)) < 0.02
        dense = torch.nn.functional.linear(x, first.weight.dequantize(), first.bias)
    assert 1e-3 < _relative(packed[0](x), dense) < 0.05  # int8 activations: not a dense bf16 layer


def test_packed_layer_rows_are_padded_to_few_shapes_without_changing_a_row():
    """oneDNN caches a kernel per row count: 19 rows enter its matmul as bucket(19) = 20, and each row of the output
    is the row computed alone."""
    layer = _layers(Int8DynamicActivationInt8WeightConfig())[0]
    pack_linears(layer)
    x = torch.randn(19, 96, dtype=torch.bfloat16)
    with torch.inference_mode():
        with torch.profiler.profile(record_shapes=True) as profile:
            out = layer(x)
        alone = torch.cat([layer(x[row : row + 1]) for row in range(19)])
    shapes = [event.input_shapes[0] for event in profile.events() if event.name == "onednn::qlinear_pointwise"]
    assert shapes == [[bucket(19), 96]] == [[20, 96]]
    assert out.shape == (19, 160) and torch.equal(out, alone)

