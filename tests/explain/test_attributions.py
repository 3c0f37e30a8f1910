"""Attributions: shape, completeness of integrated gradients, word alignment, labels and bad input."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from leptonkit.errors import InvalidInputError
from leptonkit.explain.attribution import baseline_ids
from leptonkit.explain.explainer import explain
from leptonkit.explain.words import aggregate, token_words

TEXT = "it 's a charming , often affecting journey -- isn't it? Café au lait."


def _logit(loaded, input_ids: torch.Tensor, index: int) -> float:
    with torch.no_grad():
        return float(loaded.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits[0, index])


def test_ig_completeness_matches_logit_difference_from_baseline(classifier):
    result = explain(classifier, TEXT, steps=32)
    index = classifier.labels.index(result["label"])
    enc = classifier.tokenizer(TEXT, return_special_tokens_mask=True, return_tensors="pt")
    reference = baseline_ids(enc["input_ids"], enc["special_tokens_mask"], classifier.tokenizer)
    assert int((reference != enc["input_ids"]).sum()) == enc["input_ids"].shape[1] - 2  # only [CLS]/[SEP] kept
    difference = _logit(classifier, enc["input_ids"], index) - _logit(classifier, reference, index)
    total = sum(a["score"] for a in result["attributions"])
    assert abs(difference) > 0.05, "the random head should separate input from baseline"
    assert total == pytest.approx(difference, abs=0.02 * abs(difference) + 1e-3)
    assert abs(result["delta"]) < 0.02 * abs(difference) + 1e-3


def test_words_align_with_whitespace_words_and_offsets(tiny_classifier):
    result = explain(tiny_classifier, TEXT, method="gxi")
    words = result["attributions"]
    assert [w["word"] for w in words] == TEXT.split()
    assert all(TEXT[w["start"] : w["end"]] == w["word"] for w in words)
    assert result["truncated"] is False and result["delta"] is None
    assert result["label"] in tiny_classifier.labels and 0.0 <= result["score"] <= 1.0
    assert any(w["score"] != 0.0 for w in words)


def test_named_label_is_explained_instead_of_the_prediction(tiny_classifier):
    predicted = explain(tiny_classifier, TEXT, method="gxi")
    other = next(label for label in tiny_classifier.labels if label != predicted["label"])
    named = explain(tiny_classifier, TEXT, label=other, method="gxi")
    assert named["label"] == other
    assert named["score"] == pytest.approx(1.0 - predicted["score"], abs=1e-5)
    assert [w["score"] for w in named["attributions"]] != [w["score"] for w in predicted["attributions"]]


def test_sub_words_sum_into_their_words():
    text = " unbelievably  good"
    # WordPiece-like pieces, and a byte-level piece whose offsets include the leading space.
    offsets = [(0, 0), (1, 3), (3, 13), (14, 19), (0, 0)]
    special = [True, False, False, False, True]
    assert token_words(text, offsets, special) == [None, 0, 0, 1, None]
    words, truncated = aggregate(text, [9.0, 1.0, 2.0, -0.5, 9.0], offsets, special)
    assert [(w.word, w.start, w.end, w.score) for w in words] == [("unbelievably", 1, 13, 3.0), ("good", 15, 19, -0.5)]
    assert truncated is False


def test_long_text_reports_truncation(tiny_classifier):
    text = " ".join(["wonderful"] * 600)
    result = explain(tiny_classifier, text, method="gxi")
    assert result["truncated"] is True
    assert 0 < len(result["attributions"]) < 128


def test_ner_explains_each_entity_with_completeness(tagger):
    text = "John Smith flew from Paris to New York ."
    result = explain(tagger, text, steps=32)
    entities = result["entities"]
    assert entities, "the seeded random head should tag something"
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert [a["word"] for a in entity["attributions"]] == text.split()
        total = sum(a["score"] for a in entity["attributions"])
        difference = entity["logit"] - entity["baseline_logit"]
        assert total == pytest.approx(difference, abs=0.03 * abs(difference) + 2e-3)
    kind = entities[0]["type"]
    only = explain(tagger, text, label=kind, method="gxi")["entities"]
    assert only and all(e["type"] == kind for e in only)


def test_adapter_model_is_explained_through_peft(tiny_classifier):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        copy.deepcopy(tiny_classifier.model),
        LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"], init_lora_weights=False),
    ).eval()
    loaded = dataclasses.replace(tiny_classifier, model=peft_model)
    result = explain(loaded, TEXT, steps=16)
    total = sum(a["score"] for a in result["attributions"])
    assert total == pytest.approx(result["logit"] - result["baseline_logit"], abs=0.05)


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("   ", {}, "empty"),
        (TEXT, {"label": "neutral"}, "label 'neutral' does not exist"),
        (TEXT, {"method": "shap"}, "unknown method"),
        (TEXT, {"steps": 0}, "steps must be"),
    ],
)
def test_bad_requests_raise_one_clear_error(tiny_classifier, text, options, message):
    with pytest.raises(InvalidInputError, match=message) as info:
        explain(tiny_classifier, text, **options)
    assert "\n" not in str(info.value)


def test_models_without_explanations_are_rejected(tiny_classifier, tagger):
    generator = dataclasses.replace(tiny_classifier, task="generation")
    with pytest.raises(InvalidInputError, match="generation model"):
        explain(generator, TEXT)
    with pytest.raises(InvalidInputError, match="use one of: LOC, PER"):
        explain(tagger, TEXT, label="B-PER")
