"""Hashed dropout: the mask is splitmix64 in 16-bit lanes, Bernoulli(1 - p) and uncorrelated; the mode routes dropout,
plain and inside attention, and leaves everything else as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from leptonkit.train.hashed_dropout import SEEDS, attention, draw_keys, dropout, hashed_dropout, keep_mask


def splitmix64(x: int) -> int:
    """The reference hash, in Python integers (splitmix64's finaliser)."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) % 2**64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) % 2**64
    return x ^ (x >> 31)


def factors_for(shape: tuple[int, ...], p: float) -> torch.Tensor:
    """The dropout factors (0 or 1 / (1 - p)) that the next hashed dropout call draws."""
    return keep_mask(torch.Size(shape), *draw_keys(), p).float() / (1 - p)


def test_the_mask_is_splitmix64_of_seed_plus_word_xor_key_in_16_bit_lanes_against_p() -> None:
    seed, key, p = SEEDS - 5000, -0x2345678, 0.3
    mask = keep_mask(torch.Size([40, 99]), seed, key, p).flatten().tolist()  # 3,960 elements: a last partial word
    lanes = [
        (splitmix64((seed + i // 4) ^ (key % 2**64)) >> (16 * (i % 4))) & 0xFFFF  # little-endian memory order
        for i in range(3960)
    ]
    signed = [lane - 2**16 if lane >= 2**15 else lane for lane in lanes]  # the lane read as an int16
    expected = [s + 2**15 >= round(p * 2**16) for s in signed]
    assert mask == expected
    assert 0 < sum(expected) < 3960  # both outcomes occur, so the comparison was tested


def test_calls_whose_index_ranges_overlap_draw_unrelated_masks() -> None:
    n, shift = 1 << 20, 5
    torch.manual_seed(0)
    (_, key), (_, other) = draw_keys(), draw_keys()
    first = keep_mask(torch.Size([n]), 1000, key, 0.5)
    same_key = keep_mask(torch.Size([n]), 1000 + shift, key, 0.5)
    other_key = keep_mask(torch.Size([n]), 1000 + shift, other, 0.5)
    lag = shift * 4  # four elements a word
    assert torch.equal(first[lag:], same_key[:-lag])  # what the key is for
    agreement = (first[lag:] == other_key[:-lag]).float().mean().item()
    assert abs(agreement - 0.5) < 5 * (0.25 / n) ** 0.5


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_masks_keep_one_minus_p_with_no_correlation_between_neighbours_or_seeds(p: float) -> None:
    n = 1 << 21
    first = keep_mask(torch.Size([n]), 12345, 99, p).float()
    second = keep_mask(torch.Size([n]), 777, 4242, p).float()
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(first.mean().item() - (1 - p)) < 5 * sigma
    neighbours = torch.corrcoef(torch.stack([first[:-1], first[1:]]))[0, 1].item()
    seeds = torch.corrcoef(torch.stack([first, second]))[0, 1].item()
    assert abs(neighbours) < 5 / n**0.5 and abs(seeds) < 5 / n**0.5


def test_dropout_scales_kept_values_zeroes_the_rest_and_its_gradient_follows() -> None:
    x = torch.randn(6, 7, 50, dtype=torch.bfloat16, requires_grad=True)
    torch.manual_seed(3)
    y, mask = dropout(x, 0.25)
    torch.manual_seed(3)
    factors = factors_for(x.shape, 0.25)
    torch.testing.assert_close(y, (x.float() * factors).bfloat16())
    assert mask.dtype == torch.bool and torch.equal(mask, factors != 0)
    assert torch.equal(y == 0, ~mask) and mask.any() and not mask.all()
    y.float().sum().backward()
    torch.testing.assert_close(x.grad, factors.bfloat16())


def test_the_mode_routes_training_dropout_and_nothing_else() -> None:
    x = torch.randn(4, 9, 16)
    layer = torch.nn.Dropout(0.2)
    with hashed_dropout():
        torch.manual_seed(0)
        routed = layer(x)
        layer.eval()
        unchanged = layer(x)
        torch.manual_seed(0)
        inplace = F.dropout(x.clone(), 0.2, training=True, inplace=True)  # ATen's, in place as asked
    torch.manual_seed(0)
    assert torch.equal(routed, x * factors_for(x.shape, 0.2))
    assert torch.equal(unchanged, x)
    torch.manual_seed(0)
    assert torch.equal(inplace, F.dropout(x.clone(), 0.2, training=True))
    with hashed_dropout(enabled=False):
        torch.manual_seed(0)
        assert torch.equal(F.dropout(x, 0.2), inplace)


def test_lora_mask_dropout_is_routed_and_keeps_its_one_byte_mask() -> None:
    from leptonkit.train.methods import MaskDropout

    x = torch.randn(3, 40)
    with hashed_dropout():
        torch.manual_seed(2)
        routed = MaskDropout(0.3)(x)
        torch.manual_seed(2)
        output, mask = torch.native_dropout(x, 0.3, True)
        evaluation = torch.native_dropout(x, 0.3, False)[0]
    torch.manual_seed(2)
    expected = x * factors_for(x.shape, 0.3)
    assert torch.equal(routed, expected) and torch.equal(output, expected)
    assert mask.dtype == torch.bool and torch.equal(mask, expected != 0)
    assert torch.equal(evaluation, x)


def test_a_run_is_reproducible_from_its_seed_and_calls_draw_fresh_masks() -> None:
    x = torch.ones(1000)
    with hashed_dropout():
        torch.manual_seed(11)
        first, second = F.dropout(x, 0.5), F.dropout(x, 0.5)
        torch.manual_seed(11)
        again = F.dropout(x, 0.5)
    assert torch.equal(first, again)
    assert not torch.equal(first, second)


def reference_attention(q, k, v, mask, factors, scale):
    scores = (q @ k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, -torch.inf) if mask.dtype == torch.bool else scores + mask
    return (torch.softmax(scores.float(), dim=-1).nan_to_num(0.0).to(v.dtype) * factors) @ v


@pytest.mark.parametrize("mask_kind", ["padding", "additive", "none"])
def test_attention_with_dropout_is_the_math_path_with_the_hashed_mask_forward_and_backward(mask_kind: str) -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, requires_grad=True) for _ in range(3))
    mask = {
        "padding": torch.tensor([[True] * 5, [True, True, True, False, False]]).view(2, 1, 1, 5),
        "additive": torch.randn(2, 1, 5, 5),
        "none": None,
    }[mask_kind]
    with hashed_dropout():
        torch.manual_seed(7)
        out = F.scaled_dot_product_attention(q, k, v, mask, dropout_p=0.3)
    out.sum().backward()
    got = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    torch.manual_seed(7)
    expected = reference_attention(q, k, v, mask, factors_for((2, 3, 5, 5), 0.3), 8**-0.5)
    expected.sum().backward()
    torch.testing.assert_close(out, expected)
    for grad, t in zip(got, (q, k, v), strict=True):
        torch.testing.assert_close(grad, t.grad)


def test_causal_grouped_query_attention_and_fully_masked_rows() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    with hashed_dropout():
        torch.manual_seed(5)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.2, is_causal=True, enable_gqa=True)
    torch.manual_seed(5)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    expected = reference_attention(
        q,
        k.repeat_interleave(2, 1),
        v.repeat_interleave(2, 1),
        causal,
        factors_for((1, 4, 6, 6), 0.2),
        8**-0.5,
    )
    torch.testing.assert_close(out, expected)
    nothing_visible = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    assert torch.equal(attention(q, q, q, nothing_visible, 0.2), torch.zeros_like(q))


def test_attention_without_dropout_stays_on_aten() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    with hashed_dropout():
        inside = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(inside, F.scaled_dot_product_attention(q, k, v, is_causal=True))
