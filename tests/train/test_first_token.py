"""A sequence classifier's last layer computing only the first token's row: the same logits and gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from leptonkit.train.first_token import first_token_rows, last_layer
from leptonkit.train.loop import default_loss, train_loop
from leptonkit.train.recipe import TrainSettings
from tests.conftest import tiny_bert_config

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def padded_batch() -> dict[str, torch.Tensor]:
    """Three texts of 11, 7 and 4 tokens, padded to 11."""
    generator = torch.Generator().manual_seed(0)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids = torch.randint(5, 90, (3, 11), generator=generator) * mask
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1])}


def logits_and_gradients(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads


def assert_same_as_full_forward(model: torch.nn.Module, rows: int = 1) -> None:
    """The same logits and gradients with and without :func:`first_token_rows`, whose last layer's feed-forward
    then runs on ``rows`` rows per text."""
    model.eval()  # no dropout: both passes see the same function
    batch = padded_batch()
    full_logits, full_grads = logits_and_gradients(model, batch)
    shapes: list[torch.Size] = []
    hook = last_layer(model).intermediate.register_forward_hook(lambda _m, args, _out: shapes.append(args[0].shape))
    with first_token_rows(model) as applied:
        logits, grads = logits_and_gradients(model, batch)
    hook.remove()
    assert applied and [s[1] for s in shapes] == [rows]
    torch.testing.assert_close(logits, full_logits, rtol=0, atol=1e-6)
    assert grads.keys() == full_grads.keys()
    scale = max(g.abs().max() for g in full_grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=0, atol=1e-6 * scale, msg=name)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_minilm_classifier_gets_the_same_logits_and_gradients(attention: str) -> None:
    from leptonkit.registry.store import builtin_source

    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        builtin_source("builtin:minilm")[0], num_labels=2, attn_implementation=attention
    )
    assert_same_as_full_forward(model)


@pytest.mark.parametrize("config", [transformers.RobertaConfig, transformers.ElectraConfig])
def test_other_bert_family_classifiers_get_the_same_logits_and_gradients(config: type) -> None:
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(config(**SIZES, num_labels=2))
    assert_same_as_full_forward(model)


def test_a_lora_classifier_gets_the_same_gradients_on_its_adapters() -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = transformers.BertForSequenceClassification(tiny_bert_config(["a", "b"], **SIZES))
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["query", "value"], init_lora_weights=False))
    assert_same_as_full_forward(model)


def test_a_prefix_tuned_classifier_keeps_its_full_last_layer() -> None:
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    from leptonkit.registry.loading import expose_past_key_values

    torch.manual_seed(0)
    base = transformers.BertForSequenceClassification(tiny_bert_config(["a", "b"], **SIZES))
    expose_past_key_values(base)
    model = get_peft_model(base, PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=4))
    assert_same_as_full_forward(model, rows=11)  # its virtual keys come in a cache: the layer's own forward


def test_the_layer_is_restored_and_other_models_are_left_alone() -> None:
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(tiny_bert_config(["a", "b"], **SIZES))
    layer = last_layer(model)
    keys = list(model.state_dict())
    with first_token_rows(model):
        assert "forward" in vars(layer) and list(model.state_dict()) == keys
    assert "forward" not in vars(layer)

    tagger = transformers.BertForTokenClassification(tiny_bert_config(["O", "B-X"], **SIZES))
    with first_token_rows(tagger) as applied:
        assert not applied and last_layer(tagger) is None
        out = tagger(**{k: v for k, v in padded_batch().items() if k != "labels"})
    assert out.logits.shape == (3, 11, 2)  # every token still has its row


def test_the_training_loop_trains_classifiers_this_way(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(tiny_bert_config(["a", "b"], **SIZES))
    seen: list[bool] = []

    def loss(trained: torch.nn.Module, batch: dict) -> torch.Tensor:
        seen.append("forward" in vars(last_layer(trained)))
        return default_loss(trained, batch)

    batch = padded_batch()
    loader = torch.utils.data.DataLoader([batch], batch_size=None)
    settings = TrainSettings(epochs=2, lr=1e-3, precision="fp32", checkpoint_every=None, log_every=1)
    train_loop(model, loader, settings, tmp_path / "run", compute_loss=loss)
    assert seen == [True, True]
    assert "forward" not in vars(last_layer(model))
