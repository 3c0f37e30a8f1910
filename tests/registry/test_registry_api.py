"""The registry through its Python API: real SQLite, real files, real models."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from transformers import BertModel

from leptonkit.errors import ConflictError, InvalidInputError, NotFoundError
from leptonkit.registry import Registry, parse_ref
from leptonkit.registry.artifacts import sha256_file


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real BERT folder written by save_pretrained."""
    from transformers import BertConfig

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    )
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(folder)
    return folder


def test_references_parse_and_reject_garbage():
    assert parse_ref("minilm").version is None
    assert parse_ref("minilm:3").version == 3
    assert parse_ref("minilm@prod").alias == "prod"
    for bad in ("", "a b", "x:", "x@", ":3", "x:one", "-x"):
        with pytest.raises(InvalidInputError):
            parse_ref(bad)


def test_versions_increment_and_latest_resolves(registry: Registry, tiny_bert: Path):
    first = registry.register(tiny_bert, name="bert")
    second = registry.register(tiny_bert, name="bert", metrics={"accuracy": 0.5})
    assert (first.version, second.version) == (1, 2)
    assert registry.get("bert").version == 2
    assert registry.get("bert:1").path != registry.get("bert:2").path
    assert second.metrics == {"accuracy": 0.5}
    assert second.task == "embedding"  # BertModel: no task head
    assert second.parameters == sum(p.numel() for p in BertModel.from_pretrained(tiny_bert).parameters())
    recorded = {f["path"]: f["sha256"] for f in second.files}
    assert recorded["model.safetensors"] == sha256_file(tiny_bert / "model.safetensors")
    assert second.libraries["torch"] == version("torch")
    assert second.libraries["transformers"] == version("transformers")


def test_version_numbers_are_never_reused_after_removal(registry: Registry, tiny_bert: Path):
    registry.register(tiny_bert, name="bert")
    registry.register(tiny_bert, name="bert")
    registry.remove("bert:2")
    assert registry.register(tiny_bert, name="bert").version == 3


def test_alias_moves_and_protects_its_version(registry: Registry, tiny_bert: Path):
    registry.register(tiny_bert, name="bert")
    registry.register(tiny_bert, name="bert")
    registry.alias("bert:1", "prod")
    assert registry.get("bert@prod").version == 1
    with pytest.raises(ConflictError, match="bert@prod"):
        registry.remove("bert:1")
    registry.alias("bert:2", "prod")  # promote
    assert registry.get("bert@prod").version == 2
    assert registry.get("bert:1").aliases == []
    registry.remove("bert:1")
    with pytest.raises(NotFoundError):
        registry.get("bert:1")
    assert registry.remove("bert:2", force=True).aliases == ["prod"]
    with pytest.raises(NotFoundError):
        registry.get("bert@prod")


def test_tags_and_metrics_merge(registry: Registry, tiny_bert: Path):
    registry.register(tiny_bert, name="bert", tags={"team": "nlp"})
    registry.tag("bert", {"stage": "dev"})
    registry.log_metrics("bert:1", {"f1": 0.9})
    version = registry.get("bert:1")
    assert version.tags == {"team": "nlp", "stage": "dev"}
    assert version.metrics == {"f1": 0.9}


def test_in_memory_model_and_adapter_with_pinned_base(registry: Registry, tiny_bert: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=3)
    registered = registry.register(model, name="clf")
    assert registered.task == "classification"
    assert json.loads((registered.path / "config.json").read_text())["architectures"] == [
        "BertForSequenceClassification"
    ]
    peft_model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"]))
    with pytest.raises(InvalidInputError, match="needs its base"):
        registry.register(peft_model, name="clf-lora")
    adapter = registry.register(peft_model, name="clf-lora", base="clf")
    assert adapter.kind == "adapter"
    assert adapter.base == "clf:1"
    assert adapter.task == "classification"
    assert (adapter.path / "adapter_config.json").is_file()
    with pytest.raises(ConflictError, match="adapter clf-lora:1"):
        registry.remove("clf:1")


def test_failed_registration_leaves_nothing(registry: Registry, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match=r"neither config\.json"):
        registry.register(empty, name="broken")
    assert registry.list() == []
    assert list(registry.staging.iterdir()) == []
    assert not (registry.artifacts / "broken").exists()
