"""Encoders with seeded random heads, enough to check attributions without training: the real all-MiniLM-L6-v2
where the encoder matters (completeness), tiny BERTs with the MiniLM tokenizer where only shapes and wiring do."""

from __future__ import annotations

import pytest
import torch

from leptonkit.registry.loading import LoadedModel

SENTIMENT = ["negative", "positive"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _label_maps(labels: list[str]) -> dict:
    return {"id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}


def _loaded(model, labels: list[str], task: str) -> LoadedModel:
    from transformers import AutoTokenizer

    from leptonkit.registry.store import builtin_source

    path, _ = builtin_source("builtin:minilm")
    return LoadedModel(model.eval(), AutoTokenizer.from_pretrained(path), task, labels, path, None)


@pytest.fixture(scope="session")
def classifier() -> LoadedModel:
    """The real MiniLM with a seeded random sentiment head."""
    from transformers import AutoModelForSequenceClassification

    from leptonkit.registry.store import builtin_source

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        builtin_source("builtin:minilm")[0], num_labels=2, **_label_maps(SENTIMENT)
    )
    torch.nn.init.normal_(model.classifier.weight, std=0.1)
    return _loaded(model, SENTIMENT, "classification")


def _tiny(cls, labels: list[str], seed: int):
    from transformers import BertConfig

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        **_label_maps(labels),
    )
    return cls(config)


@pytest.fixture(scope="session")
def tiny_classifier() -> LoadedModel:
    from transformers import BertForSequenceClassification

    return _loaded(_tiny(BertForSequenceClassification, SENTIMENT, seed=1), SENTIMENT, "classification")


@pytest.fixture(scope="session")
def tagger() -> LoadedModel:
    from transformers import BertForTokenClassification

    return _loaded(_tiny(BertForTokenClassification, NER_LABELS, seed=2), NER_LABELS, "ner")
