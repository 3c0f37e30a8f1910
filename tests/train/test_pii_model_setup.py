"""``pii-setup`` end to end on the CoNLL-2003 sample in tests/samples, with a tiny encoder as the base so the
fine-tuning run takes seconds: the result is registered as an NER model, aliased @pii and found by the detector."""

from __future__ import annotations

import json

import pytest

from leptonkit.errors import InvalidInputError
from leptonkit.registry.pii import find_pii_model, pii_detector
from leptonkit.train.pii_model import conll_inputs, setup_pii_model
from tests.conftest import sample, tiny_bert_config


@pytest.fixture
def tiny_base(tmp_path) -> str:
    from transformers import AutoTokenizer, BertModel

    from leptonkit.registry.store import builtin_source

    tokenizer = AutoTokenizer.from_pretrained(builtin_source("builtin:minilm")[0])
    config = tiny_bert_config()
    folder = tmp_path / "tiny-base"
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_pii_setup_trains_registers_and_aliases_the_ner_model(registry, tiny_base, tmp_path):
    conll = sample("conll2003")
    version = setup_pii_model(
        conll,
        base=tiny_base,
        name="pii-test",
        limit=60,
        work_dir=tmp_path / "prepared",
        registry=registry,
        max_steps=2,
        batch_size=8,
        precision="fp32",
    )
    assert version.task == "ner" and "pii" in version.aliases and version.tags["purpose"] == "pii"
    assert find_pii_model(registry) == "pii-test@pii"
    labels = json.loads((version.path / "config.json").read_text())["id2label"].values()
    assert {"B-PER", "B-LOC", "B-ORG"} <= set(labels)
    prepared = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    assert prepared["pii"]["mode"] == "off" and prepared["rows"]["in"] == 180  # 60 sentences of each file
    assert pii_detector(registry=registry).names_detected


def test_pii_setup_without_data_says_how_to_give_it(monkeypatch, tmp_path):
    monkeypatch.delenv("LEPTONKIT_PII_DATA", raising=False)
    with pytest.raises(InvalidInputError, match="pass --data CONLL_DIR"):
        conll_inputs(None)
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(InvalidInputError, match="holds no train/valid/test files"):
        conll_inputs(tmp_path)
