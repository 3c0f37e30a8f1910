"""The NER-model path of the detector, with a tiny token classifier built here whose output is known: its head is
biased so that every word is ``B-PER``. That pins what the detector must do with model entities: map the types,
keep character offsets across chunks, join name fragments, let validated patterns win on overlap, and reach
``prepare`` through the @pii alias."""

from __future__ import annotations

import json

import pytest
import torch

from leptonkit.data import prepare
from leptonkit.registry.pii import find_pii_model, pii_detector
from tests.conftest import tiny_bert_config

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


@pytest.fixture
def tiny_pii_model(registry, tmp_path) -> str:
    from transformers import AutoTokenizer, BertForTokenClassification

    from leptonkit.registry.store import builtin_source

    tokenizer = AutoTokenizer.from_pretrained(builtin_source("builtin:minilm")[0])
    config = tiny_bert_config(LABELS)
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 6.0, 0, 0, 0, 0, 0]))
    folder = tmp_path / "tiny-ner"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    version = registry.register(folder, name="tiny-ner", task="ner")
    registry.alias(version.ref, "pii")
    return "tiny-ner@pii"


def test_the_pii_alias_is_found_and_model_entities_become_person_spans(tiny_pii_model, registry):
    assert find_pii_model(registry) == tiny_pii_model
    detector = pii_detector(registry=registry)
    assert detector.names_detected
    text = "Ann wrote to bob@example.org"
    spans = detector.detect(text)
    # every word is B-PER; words a space apart are one name, the email pattern wins over the model on its span
    assert [(s.type, s.value, s.source) for s in spans] == [
        ("PERSON", "Ann wrote to", "model"),
        ("EMAIL", "bob@example.org", "pattern"),
    ]
    assert all(text[s.start : s.end] == s.value for s in spans)
    long_text = "\n".join(["words"] * 300 + ["last"])  # longer than one model chunk: offsets must still be right
    spans = detector.detect(long_text)
    assert len(spans) == 301 and all(s.value in ("words", "last") for s in spans)
    assert (spans[-1].value, spans[-1].start) == ("last", len(long_text) - 4)


def test_prepare_uses_the_alias_by_default_and_keeps_ner_alignment(tiny_pii_model, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"tokens": ["Ann", "visited", "Rome"], "tags": ["B-PER", "O", "B-LOC"]}) + "\n")
    manifest = prepare([src], task="ner", out=tmp_path / "out", split="1,0", pii="mask")
    assert manifest["pii"]["model"] == tiny_pii_model and manifest["pii"]["names_detected"]
    assert len(manifest["warnings"]) == 1 and "--pii pseudonymize keeps them learnable" in manifest["warnings"][0]
    record = json.loads((tmp_path / "out" / "train.jsonl").read_text())
    # in NER data the tags say where names are (the model reads all three words as one name); places are opt-in
    assert record == {"tokens": ["[PERSON]", "visited", "Rome"], "tags": ["B-PER", "O", "B-LOC"]}
    text = tmp_path / "text.jsonl"
    text.write_text(json.dumps({"text": "Ann visited Rome"}) + "\n")
    prepare([text], task="text", out=tmp_path / "text", split="1,0")
    # in text the model's span stands: one span over all three words
    assert json.loads((tmp_path / "text" / "train.jsonl").read_text()) == {"text": "[PERSON]"}


def test_without_a_model_names_come_from_rules_and_a_warning_says_so(home):
    with pytest.warns(UserWarning, match="word lists and context rules only"):
        detector = pii_detector()
    assert detector.names_detected and detector.model_ref is None and find_pii_model() is None
    assert not pii_detector(None, types=["EMAIL"]).names_detected
