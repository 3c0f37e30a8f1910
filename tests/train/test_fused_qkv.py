"""BERT-family self-attention projecting query, key and value in one matmul: the same outputs and gradients."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
import transformers

from leptonkit.train.fused_qkv import fused_qkv
from leptonkit.train.loop import default_loss, train_loop
from leptonkit.train.recipe import TrainSettings
from tests.conftest import tiny_bert_config
from tests.train.test_first_token import SIZES, padded_batch

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = {
    "bert": lambda: tiny_bert_config(["a", "b"], **SIZES),
    "roberta": lambda: transformers.RobertaConfig(**SIZES, num_labels=2),
    "electra": lambda: transformers.ElectraConfig(**SIZES, num_labels=2),
}


def outputs(model: torch.nn.Module, fuse: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    model.zero_grad(set_to_none=True)
    with fused_qkv(model) if fuse else contextlib.nullcontext(0) as fused:
        out = model(**padded_batch())
        out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, fused


@pytest.mark.parametrize("family", CONFIGS)
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_the_same_logits_and_gradients_as_three_projections(family: str, attention: str) -> None:
    torch.manual_seed(0)
    config = CONFIGS[family]()
    config._attn_implementation = attention
    model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    logits, grads, _ = outputs(model, fuse=False)
    fused_logits, fused_grads, fused = outputs(model, fuse=True)
    assert fused == SIZES["num_hidden_layers"]
    torch.testing.assert_close(fused_logits, logits, rtol=0, atol=1e-6)
    assert fused_grads.keys() == grads.keys()
    scale = max(g.abs().max() for g in grads.values())
    for name, grad in fused_grads.items():
        torch.testing.assert_close(grad, grads[name], rtol=0, atol=1e-6 * scale, msg=name)
    assert not any("forward" in vars(m) for m in model.modules())  # restored


def test_a_lora_wrapped_attention_keeps_its_own_forward() -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = transformers.BertForSequenceClassification(tiny_bert_config(["a", "b"], **SIZES))
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["query", "value"], init_lora_weights=False))
    with fused_qkv(model) as fused:
        assert fused == 0


def test_the_training_loop_projects_once(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(tiny_bert_config(["a", "b"], **SIZES))
    attention = model.bert.encoder.layer[0].attention.self
    seen: list[bool] = []

    def loss(trained: torch.nn.Module, batch: dict) -> torch.Tensor:
        seen.append("forward" in vars(attention))
        return default_loss(trained, batch)

    loader = torch.utils.data.DataLoader([padded_batch()], batch_size=None)
    settings = TrainSettings(epochs=2, lr=1e-3, precision="fp32", checkpoint_every=None, log_every=1)
    train_loop(model, loader, settings, tmp_path / "run", compute_loss=loss)
    assert seen == [True, True] and "forward" not in vars(attention)
