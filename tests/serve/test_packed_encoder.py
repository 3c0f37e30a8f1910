"""Packed (unpadded) encoder batches give what the padded forward gives, for every family they are enabled for."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

from leptonkit.serve.engine import packed_encoder
from leptonkit.serve.engine.cpu_linear import bucket, pack_linears

LENGTHS = [5, 12, 3, 30, 1]  # the batch's texts, in tokens: padded to 30


def tiny(family: str, head: type, **fields) -> torch.nn.Module:
    torch.manual_seed(0)
    sizes = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    sizes |= dict(max_position_embeddings=128, num_labels=3, pad_token_id=1 if "roberta" in family else 0)
    return head.from_config(AutoConfig.for_model(family, **sizes | fields)).eval()


def padded_batch(lengths: list[int], pad: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(lengths), max(lengths)), pad)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        span = slice(max(lengths) - n, None) if left else slice(0, n)
        ids[row, span] = torch.randint(5, 100, (n,))
        mask[row, span] = 1
    return ids, mask


def packed_rows(model: torch.nn.Module, **inputs) -> tuple[object, list[int]]:
    """The output inside ``packing()``, and the number of rows the embeddings produced per call."""
    rows = []
    embeddings = model.base_model.embeddings
    hook = embeddings.register_forward_hook(lambda module, args, out: rows.append(out.shape[:2]))
    try:
        with torch.inference_mode(), packed_encoder.packing():
            out = model(**inputs)
    finally:
        hook.remove()
    return out, rows


@pytest.mark.parametrize("family", sorted(packed_encoder.FAMILIES))
@pytest.mark.parametrize("head", [AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoModel])
def test_packed_forward_matches_padded(family, head):
    model = tiny(family, head)
    ids, mask = padded_batch(LENGTHS, model.config.pad_token_id)
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert packed_encoder.enable(model)
    got, rows = packed_rows(model, input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert rows == [(1, sum(LENGTHS))]  # one row of the real tokens: no padding went through the layers
    real = mask.bool()
    if head is AutoModelForSequenceClassification:
        torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-5)
    elif head is AutoModelForTokenClassification:
        torch.testing.assert_close(got.logits[real], expected.logits[real], atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(got.last_hidden_state[real], expected.last_hidden_state[real], atol=1e-5, rtol=1e-5)
        if getattr(expected, "pooler_output", None) is not None:  # ELECTRA has no pooler
            torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=1e-5, rtol=1e-5)
    assert len(got.hidden_states) == len(expected.hidden_states)
    torch.testing.assert_close(got.hidden_states[-1][real], expected.hidden_states[-1][real], atol=1e-5, rtol=1e-5)


def test_left_padding_token_types_and_long_blocks_through_sdpa(monkeypatch):
    """Positions and token types are those of the padded batch, whichever side it is padded on; blocks too large
    for the matmul path attend through SDPA."""
    model = tiny("bert", AutoModelForTokenClassification, type_vocab_size=2)
    ids, mask = padded_batch(LENGTHS, 0, left=True)
    types = torch.randint(0, 2, ids.shape) * mask
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    packed_encoder.enable(model)
    monkeypatch.setattr(packed_encoder, "_MAX_MATMUL_SCORES", 0)
    got, rows = packed_rows(model, input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert rows == [(1, sum(LENGTHS))]
    real = mask.bool()
    torch.testing.assert_close(got.logits[real], expected[real], atol=1e-5, rtol=1e-5)


def test_bf16_packed_linears_get_bucketed_rows_and_the_same_labels():
    model = tiny("bert", AutoModelForSequenceClassification, hidden_size=64, num_attention_heads=4)
    model = model.to(torch.bfloat16)
    if not pack_linears(model):
        pytest.skip("oneDNN packed bf16 linears need a CPU with bf16 instructions (AVX-512 BF16, AMX)")
    lengths = [9, 17, 4, 12] * 5  # 210 real tokens: the packed linears take 224 rows
    ids, mask = padded_batch(lengths, 0)
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits.float()
    packed_encoder.enable(model)
    got, rows = packed_rows(model, input_ids=ids, attention_mask=mask)
    assert rows == [(1, bucket(sum(lengths)))] and bucket(sum(lengths)) > sum(lengths)
    torch.testing.assert_close(got.logits.float(), expected, atol=0.05, rtol=0.05)
    assert torch.equal(got.logits.argmax(-1), expected.argmax(-1))


def test_runs_as_before_outside_packing_without_padding_and_for_other_families():
    model = tiny("bert", AutoModelForSequenceClassification)
    ids, mask = padded_batch(LENGTHS, 0)
    full_ids, full_mask = padded_batch([7, 7, 7], 0)
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits
        expected_full = model(input_ids=full_ids, attention_mask=full_mask).logits
    packed_encoder.enable(model)
    rows = []
    model.bert.embeddings.register_forward_hook(lambda module, args, out: rows.append(out.shape[:2]))
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=1e-5)
        with packed_encoder.packing():
            full = model(input_ids=full_ids, attention_mask=full_mask).logits  # no padding: nothing to pack
    torch.testing.assert_close(full, expected_full, atol=1e-5, rtol=1e-5)
    assert rows == [(5, 30), (3, 7)]

    distilbert = tiny("distilbert", AutoModelForSequenceClassification)
    assert not packed_encoder.packable(distilbert) and not packed_encoder.enable(distilbert)
    assert distilbert.config._attn_implementation != packed_encoder.PACKED_ATTENTION
