"""The shared inference API on the real all-MiniLM-L6-v2 (task heads are built here, with chosen weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from leptonkit.errors import InvalidInputError
from leptonkit.inference import classify, decode_entities, embed, extract_entities, tag_words
from leptonkit.registry.loading import load_model

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def minilm_path() -> Path:
    from leptonkit.registry.store import builtin_source

    return builtin_source("builtin:minilm")[0]


def _ner_folder(tmp_path: Path, minilm_path: Path, favoured: str) -> Path:
    """A MiniLM token classifier whose head always prefers ``favoured``, saved as a plain HF folder."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(
        minilm_path, num_labels=len(NER_LABELS), id2label=dict(enumerate(NER_LABELS))
    )
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-5.0)
        model.classifier.bias[NER_LABELS.index(favoured)] = 5.0
    folder = tmp_path / favoured
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return folder


def test_classify_returns_a_distribution_per_text_in_input_order(minilm_path: Path) -> None:
    loaded = load_model(minilm_path, task="classification")
    texts = ["short", "a much longer text that will sort after the short one " * 3, "mid length text"]
    out = classify(loaded, texts, batch_size=2)
    assert len(out) == 3
    for item in out:
        assert set(item["scores"]) == {"LABEL_0", "LABEL_1"}
        assert sum(item["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert item["score"] == max(item["scores"].values())
        assert item["scores"][item["label"]] == item["score"]
    # the same text alone gives the same answer as inside a padded batch: order and padding are handled
    assert classify(loaded, [texts[2]])[0]["scores"]["LABEL_0"] == pytest.approx(out[2]["scores"]["LABEL_0"], 1e-4)


def test_classify_rejects_a_bare_string(minilm_path: Path) -> None:
    loaded = load_model(minilm_path, task="classification")
    with pytest.raises(InvalidInputError, match="list of strings"):
        classify(loaded, "not a list")  # type: ignore[arg-type]


def test_entities_map_words_back_to_character_offsets(tmp_path: Path, minilm_path: Path) -> None:
    loaded = load_model(_ner_folder(tmp_path, minilm_path, "B-PER"))
    texts = ["  Angela Merkel visited Zürich,  today", "Hi"]
    entities = extract_entities(loaded, texts)
    words = [e["text"] for e in entities[0]]
    assert words == ["Angela", "Merkel", "visited", "Zürich", ",", "today"]
    for entity in entities[0]:
        assert texts[0][entity["start"] : entity["end"]] == entity["text"]
        assert entity["type"] == "PER"
        assert 0.9 < entity["score"] <= 1.0
    assert entities[1] == [{"type": "PER", "start": 0, "end": 2, "text": "Hi", "score": pytest.approx(1.0, 1e-3)}]


def test_inside_tags_join_words_into_one_span(tmp_path: Path, minilm_path: Path) -> None:
    loaded = load_model(_ner_folder(tmp_path, minilm_path, "I-LOC"))
    text = "New  York City"
    [[entity]] = extract_entities(loaded, [text])
    assert (entity["start"], entity["end"], entity["text"], entity["type"]) == (0, 14, "New  York City", "LOC")
    assert tag_words(loaded, [["New", "York"], ["x"]]) == [["I-LOC", "I-LOC"], ["I-LOC"]]


def test_decode_entities_follows_iob2() -> None:
    text = "Ann Lee met Bob in Paris"
    spans = [(0, 3), (4, 7), (8, 11), (12, 15), (16, 18), (19, 24)]
    tags = [("B-PER", 0.9), ("I-PER", 0.7), ("O", 1.0), ("B-PER", 0.8), ("O", 1.0), ("I-LOC", 0.6)]
    out = decode_entities(text, spans, tags)
    assert [(e["type"], e["text"]) for e in out] == [("PER", "Ann Lee"), ("PER", "Bob"), ("LOC", "Paris")]
    assert out[0]["score"] == pytest.approx(0.8)


def test_embeddings_are_normalised_and_semantic(minilm_path: Path) -> None:
    loaded = load_model(minilm_path)
    vectors = torch.tensor(embed(loaded, ["A cat sits on the mat.", "A kitten rests on a rug.", "Stocks fell."]))
    assert vectors.shape == (3, 384)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2
