"""Fine-tuning through the Python API on prepared slices of SST-2 and CoNLL-2003, with a tiny BERT."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from leptonkit.errors import InvalidInputError
from leptonkit.inference import classify, extract_entities
from leptonkit.registry.loading import load_model
from leptonkit.train.api import build_recipe, finetune

FAST = {"max_steps": 3, "batch_size": 16, "lr": 1e-3, "precision": "fp32"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("method", "extra", "kind"),
    [
        ("full", {}, "model"),
        ("freeze", {}, "model"),
        ("lora", {"merge": True}, "model"),
        ("ia3", {}, "adapter"),
        ("prefix", {}, "adapter"),
        ("lora", {}, "adapter"),
    ],
)
def test_each_method_registers_a_loadable_classifier(
    method: str, extra: dict, kind: str, registry, tiny_bert_dir: Path, sst2_prepared: Path
) -> None:
    version = finetune(
        base=str(tiny_bert_dir), data=sst2_prepared, task="classification", method=method, name="s", **FAST, **extra
    )
    assert (version.kind, version.task) == (kind, "classification")
    assert (
        version.lineage["data"]["content_hash"]
        == json.loads((sst2_prepared / "manifest.json").read_text())["content_hash"]
    )
    training = version.metrics["training"]
    assert (
        training["steps"] == 3 and training["trainable_parameters"] < training["total_parameters"]
    ) or method == "full"
    if method == "freeze":
        assert training["trainable_parameters"] == (32 * 32 + 32) + (32 * 2 + 2)  # the head only: pooler, classifier
    assert set(version.metrics["test"]) == {"accuracy", "macro_f1"}
    loaded = load_model(version.ref, registry=registry)
    assert loaded.labels == ["0", "1"]
    [result] = classify(loaded, ["a gorgeous , witty , seductive movie ."])
    assert result["label"] in ("0", "1") and sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def test_ner_finetune_trains_registers_and_decodes_spans(registry, tiny_bert_dir: Path, conll_prepared: Path) -> None:
    version = finetune(
        base=str(tiny_bert_dir),
        data=conll_prepared,
        task="ner",
        method="full",
        name="ner",
        epochs=3,
        batch_size=8,
        lr=3e-3,
        precision="fp32",
        log_every=1,
        max_length=24,
    )
    assert version.kind == "model" and version.task == "ner"
    assert set(version.metrics["test"]) == {"entity_f1", "precision", "recall"}
    assert 0 < version.metrics["training"]["truncated_rows"] < 68  # long sentences are cut at 24 tokens, and counted
    run = Path(version.lineage["run_dir"])
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # it learns (mostly the O tag at this size)
    loaded = load_model(version.ref, registry=registry)
    assert loaded.labels[0] == "O" and {"B-PER", "I-PER", "B-LOC", "B-ORG", "B-MISC"} <= set(loaded.labels)
    text = "Peter Blackburn met officials in Brussels ."
    for entity in extract_entities(loaded, [text])[0]:
        assert text[entity["start"] : entity["end"]] == entity["text"]


def test_label_smoothing_and_class_weights_shape_the_loss(sst2_prepared: Path) -> None:
    from leptonkit.train import datasets
    from leptonkit.train.recipes.finetune import _loss_function

    recipe = build_recipe(
        base="builtin:minilm",
        data=sst2_prepared,
        task="classification",
        name="x",
        label_smoothing=0.1,
        class_weights="balanced",
    )
    data = datasets.load(sst2_prepared, "classification")
    loss_fn = _loss_function(recipe, data, ["0", "1"], "classification")
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    labels = torch.tensor([1, 0])

    class Fixed(torch.nn.Module):
        def forward(self, **inputs):
            return type("Out", (), {"logits": logits})

    counts = torch.tensor([sum(str(r["label"]) == c for r in data.splits["train"]) for c in ("0", "1")]).float()
    weight = counts.sum() / (2 * counts)
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=weight, label_smoothing=0.1)
    assert loss_fn(Fixed(), {"input_ids": torch.zeros(2, 3), "labels": labels}).item() == pytest.approx(expected.item())
    assert counts[0] != counts[1]  # the weights really differ on this slice


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_adversarial_attack_adds_gradient_and_restores_embeddings(method: str, tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from leptonkit.train.adversarial import EmbeddingAttack
    from leptonkit.train.recipe import AdversarialSettings

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    batch = {"input_ids": torch.randint(1000, 2000, (4, 7)), "labels": torch.tensor([0, 1, 0, 1])}
    attack = EmbeddingAttack(AdversarialSettings(method=method, epsilon=0.5, alpha=0.2, steps=2))
    attack.setup(model)
    before = model.get_input_embeddings().weight.detach().clone()
    model(**batch).loss.backward()
    clean = model.classifier.weight.grad.clone()
    attack.attack(model, lambda: model(**batch).loss)
    assert torch.equal(model.get_input_embeddings().weight, before)
    assert not torch.allclose(model.classifier.weight.grad, clean)
    assert not torch.allclose(model.classifier.weight.grad, 2 * clean)  # the second pass saw perturbed inputs


def test_unknown_option_and_mismatched_task_are_one_line_errors(registry, sst2_prepared: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown fine-tuning option 'epoch'"):
        finetune(base="builtin:minilm", data=sst2_prepared, task="classification", name="x", epoch=1)
    with pytest.raises(InvalidInputError, match=r"does not match task 'ner'.*looks like classification"):
        finetune(base="builtin:minilm", data=sst2_prepared, task="ner", name="x", max_steps=1)


def test_too_few_rows_for_the_splits(registry, tmp_path: Path) -> None:
    data = tmp_path / "tiny"
    data.mkdir()
    (data / "train.jsonl").write_text('{"text": "good", "label": "1"}\n{"text": "bad", "label": "0"}\n')
    (data / "manifest.json").write_text('{"content_hash": "x"}')
    with pytest.raises(InvalidInputError, match=re.escape("has no valid rows (splits found: train (2 rows))")):
        finetune(base="builtin:minilm", data=data, task="classification", name="x")


def test_raw_files_are_prepared_into_the_run_folder(registry, tiny_bert_dir: Path, sst2_raw: Path) -> None:
    version = finetune(base=str(tiny_bert_dir), data=sst2_raw, task="classification", name="raw", max_steps=1)
    prepared = Path(version.lineage["data"]["path"])
    assert prepared == Path(version.lineage["run_dir"]) / "data"
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["content_hash"] == version.lineage["data"]["content_hash"]
    assert {s["split"] for s in manifest["sources"]} == {"train", "valid", "test"}
    assert version.metrics["test"] and version.metrics["valid"]


@pytest.mark.parametrize("method", ["lora", "ia3", "prefix"])
def test_parameter_efficient_ner_registers_an_adapter_that_decodes_spans(
    method: str, registry, tiny_bert_dir: Path, conll_prepared: Path
) -> None:
    version = finetune(base=str(tiny_bert_dir), data=conll_prepared, task="ner", method=method, name="n", **FAST)
    assert (version.kind, version.task) == ("adapter", "ner")
    training = version.metrics["training"]
    assert training["steps"] == 3 and training["trainable_parameters"] < training["total_parameters"]
    assert set(version.metrics["test"]) == {"entity_f1", "precision", "recall"}
    loaded = load_model(version.ref, registry=registry)
    text = "EU rejects German call to boycott British lamb ."
    for entity in extract_entities(loaded, [text])[0]:
        assert text[entity["start"] : entity["end"]] == entity["text"] and entity["type"]
