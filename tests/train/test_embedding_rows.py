"""The word embeddings' gradient in a buffer kept across steps and written by rows: the dense backward's gradient."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
import transformers

import leptonkit.train.loop as loop
from leptonkit.train.embedding_rows import RowGradients, row_gradients
from leptonkit.train.recipe import TrainSettings
from tests.conftest import tiny_bert_config

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def batch(seed: int) -> dict[str, torch.Tensor]:
    """Four texts padded with id 0 (BERT's padding_idx), ids repeated within and across texts."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(4, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[3, 3:] = 0
    ids = torch.randint(1, 30, (4, 9), generator=generator) * mask
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(tiny_bert_config(["a", "b"], **SIZES)).eval()


def embedding_gradients(classifier: torch.nn.Module, steps: list[list[int]]) -> list[torch.Tensor]:
    """The word embeddings' gradient after each step; a step is the seeds of the batches it accumulates."""
    grads = []
    for seeds in steps:
        classifier.zero_grad(set_to_none=True)
        for seed in seeds:
            classifier(**batch(seed)).loss.backward()
        grads.append(classifier.get_input_embeddings().weight.grad.clone())
    return grads


def test_gradients_are_the_dense_backwards_bit_for_bit_step_after_step() -> None:
    steps = [[1], [2], [3, 4]]  # the rows of one step are zeroed before the next; the last accumulates two batches
    dense = embedding_gradients(model(), steps)
    classifier = model()
    with row_gradients(classifier) as rows:
        assert isinstance(rows, RowGradients)
        by_rows = embedding_gradients(classifier, steps)
        assert classifier.get_input_embeddings().weight.grad is rows.buffer  # no dense gradient was made
    for expected, got in zip(dense, by_rows, strict=True):
        assert torch.equal(got, expected)
        assert got[0].abs().sum() == 0  # the padding row gets nothing
    assert "forward" not in vars(classifier.get_input_embeddings())


def test_the_norm_reads_only_the_touched_rows_and_agrees_with_the_dense_one() -> None:
    classifier = model()
    with row_gradients(classifier) as rows:
        embedding_gradients(classifier, [[1], [2]])
        grads = [p.grad for p in classifier.parameters()]
        operands = rows.norm_operands(grads)
    ids = batch(2)["input_ids"]
    embedding = next(o for o, g in zip(operands, grads, strict=True) if g is rows.buffer)
    assert embedding.shape[0] == len(ids[ids != 0].unique())
    torch.testing.assert_close(
        torch.nn.utils.get_total_norm(operands), torch.nn.utils.get_total_norm(grads), rtol=1e-6, atol=0
    )


def test_frozen_disabled_or_tied_embeddings_are_left_alone() -> None:
    classifier = model()
    with row_gradients(classifier, enabled=False) as rows:
        assert rows is None
    classifier.get_input_embeddings().weight.requires_grad_(False)
    with row_gradients(classifier) as rows:
        assert rows is None and "forward" not in vars(classifier.get_input_embeddings())
    sizes = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
    for tied in (True, False):  # a tied LM head adds a dense gradient to the same weight
        lm = transformers.LlamaForCausalLM(transformers.LlamaConfig(**sizes, tie_word_embeddings=tied))
        with row_gradients(lm) as rows:
            assert (rows is None) == tied


def test_the_loop_trains_to_the_same_weights_with_its_clipped_fused_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = torch.utils.data.DataLoader([batch(1), batch(2), batch(3)], batch_size=None)
    settings = TrainSettings(epochs=2, lr=1e-2, precision="fp32", checkpoint_every=None, max_grad_norm=0.5)
    used: list[RowGradients | None] = []

    @contextlib.contextmanager
    def spied(model: torch.nn.Module, enabled: bool = True):
        with row_gradients(model, enabled) as rows:
            used.append(rows)
            yield rows

    monkeypatch.setattr(loop, "row_gradients", spied)
    by_rows = model().train()
    loop.train_loop(by_rows, loader, settings, tmp_path / "rows")
    assert isinstance(used[0], RowGradients)

    monkeypatch.setattr(loop, "row_gradients", lambda model, enabled=True: contextlib.nullcontext())
    dense = model().train()
    loop.train_loop(dense, loader, settings, tmp_path / "dense")
    moved = (dense.get_input_embeddings().weight - model().get_input_embeddings().weight).abs().max()
    assert moved > 1e-3  # the embeddings trained
    for (name, expected), got in zip(dense.state_dict().items(), by_rows.state_dict().values(), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)
