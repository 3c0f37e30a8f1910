"""``models export``: an adapter names its base by hub id or registry reference, never a local path, and carries a
model card with its lineage and metrics; a model keeps the card it has."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import tiny_bert_config

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _lora_adapter(base_folder: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(base_folder, num_labels=2)
    return get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"]))


def _front_matter(card: str) -> dict[str, str]:
    lines = card.split("---\n")[1].splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


def test_an_adapter_of_a_built_in_base_names_its_hub_id_and_carries_its_card(registry, minilm, cli, tmp_path):
    assert registry.get(minilm).lineage["hub_id"] == HUB_ID
    adapter = registry.register(
        _lora_adapter(registry.resolve(minilm)),
        name="sentiment",
        base=minilm,
        task="classification",
        metrics={"valid": {"accuracy": 0.75, "macro_f1": 0.5}},
        lineage={"recipe": {"method": "lora"}, "data": {"content_hash": "abc123"}},
    )
    stored = json.loads((adapter.path / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(stored).is_dir()  # what peft wrote: a local path, meaningless elsewhere

    done = cli("models", "export", "sentiment", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == HUB_ID
    card = (tmp_path / "out" / "README.md").read_text()
    front = _front_matter(card)
    assert front == {"library_name": "peft", "base_model": HUB_ID, "pipeline_tag": "text-classification"}
    assert "| valid | accuracy | 0.7500 |" in card and "| valid | macro_f1 | 0.5000 |" in card
    assert '"base": "minilm:1"' in card and '"content_hash": "abc123"' in card
    assert str(registry.home) not in json.dumps(config)
    # the registry's own copy is untouched: it still verifies
    assert cli("models", "verify", "sentiment").returncode == 0


def test_an_adapter_of_a_registered_folder_names_its_registry_reference(registry, cli, tmp_path):
    from transformers import BertForSequenceClassification

    folder = tmp_path / "tiny"
    BertForSequenceClassification(tiny_bert_config(["neg", "pos"])).save_pretrained(folder)
    base = registry.register(folder, name="tiny").ref
    registry.register(_lora_adapter(registry.resolve(base)), name="tiny-lora", base=base, task="classification")

    done = cli("models", "export", "tiny-lora", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny:1"
    card = (tmp_path / "out" / "README.md").read_text()
    assert _front_matter(card)["base_model"] == "tiny:1" and "No metrics were recorded." in card


def test_a_model_keeps_its_own_card_or_gets_one(registry, minilm, cli, tmp_path):
    from transformers import BertForSequenceClassification

    assert cli("models", "export", minilm, str(tmp_path / "minilm")).returncode == 0
    upstream = (tmp_path / "minilm" / "README.md").read_text()
    assert "all-MiniLM-L6-v2" in upstream and "exported from a leptonkit registry" not in upstream

    BertForSequenceClassification(tiny_bert_config(["neg", "pos"])).save_pretrained(tmp_path / "tiny")
    registry.register(tmp_path / "tiny", name="tiny", metrics={"test": {"accuracy": 0.5}})
    assert cli("models", "export", "tiny", str(tmp_path / "out")).returncode == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert _front_matter(card) == {"library_name": "transformers", "pipeline_tag": "text-classification"}
    assert "# tiny:1" in card and "| test | accuracy | 0.5000 |" in card
