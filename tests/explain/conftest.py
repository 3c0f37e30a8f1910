"""Encoders with seeded random heads, enough to check attributions without training: the real all-MiniLM-L6-v2
where the encoder matters (completeness), tiny BERTs with the MiniLM tokenizer where only shapes and wiring do."""

from __future__ import annotations

import pytest
import torch

from leptonkit.registry.loading import LoadedModel
from tests.conftest import label_maps, tiny_bert_config

SENTIMENT = ["negative", "positive"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


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
        builtin_source("builtin:minilm")[0], num_labels=2, **label_maps(SENTIMENT)
    )
    torch.nn.init.normal_(model.classifier.weight, std=0.1)
    return _loaded(model, SENTIMENT, "classification")


def _tiny(cls, labels: list[str], seed: int):
    torch.manual_seed(seed)
    return cls(tiny_bert_config(labels, num_hidden_layers=2, max_position_embeddings=128))


@pytest.fixture(scope="session")
def tiny_classifier() -> LoadedModel:
    from transformers import BertForSequenceClassification

    return _loaded(_tiny(BertForSequenceClassification, SENTIMENT, seed=1), SENTIMENT, "classification")


@pytest.fixture(scope="session")
def tagger() -> LoadedModel:
    from transformers import BertForTokenClassification

    return _loaded(_tiny(BertForTokenClassification, NER_LABELS, seed=2), NER_LABELS, "ner")
