"""Perturbed copies of records: what each perturbation changes, what it keeps, determinism and bad input."""

from __future__ import annotations

import random

import pytest

from leptonkit.errors import InvalidInputError
from leptonkit.robustness import parse_perturbations, perturb_records
from leptonkit.robustness.perturb import synonym, synonym_table, typo

SENTENCE = "the acting is great and the story is really moving , but the ending feels long ."
CLASSIFICATION = [{"text": SENTENCE, "label": "positive"}, {"text": "a dull , boring film .", "label": "negative"}]
NER = [
    {
        "tokens": ["Angela", "Merkel", "visited", "New", "York", "with", "Siemens", "staff", "."],
        "tags": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG", "O", "O"],
    }
]


def _changed_words(before: str, after: str) -> int:
    return sum(a != b for a, b in zip(before.split(), after.split(), strict=True))


@pytest.mark.parametrize("kind", ["typos", "case", "synonyms"])
def test_word_perturbations_change_about_rate_of_the_words_and_keep_labels(kind):
    records = [{"text": SENTENCE, "label": "positive"}] * 200
    out = perturb_records(records, kind, rate=0.2, seed=3)
    assert records[0]["text"] == SENTENCE, "the input records are left untouched"
    assert all(r["label"] == "positive" for r in out)
    changed = sum(_changed_words(SENTENCE, r["text"]) for r in out) / (200 * len(SENTENCE.split()))
    # synonyms only touch the words of the shipped list (great, really, moving, long, story, ...)
    low, high = (0.04, 0.15) if kind == "synonyms" else (0.12, 0.25)
    assert low < changed < high
    assert out == perturb_records(records, kind, rate=0.2, seed=3)
    assert out != perturb_records(records, kind, rate=0.2, seed=4)


def test_typo_is_one_keyboard_slip():
    rng = random.Random(0)
    slips = {typo("wonderful", rng) for _ in range(200)}
    assert "wonderful" not in slips and len(slips) > 20
    assert all(abs(len(slipped) - len("wonderful")) <= 1 for slipped in slips)
    assert typo("an", rng) == "an", "words under 3 letters stay"


def test_synonyms_come_from_the_shipped_list_and_keep_case():
    table = synonym_table()
    assert "superb" in table["great"] and "great" in table["superb"]
    rng = random.Random(1)
    assert synonym("Great,", rng).endswith(",") and synonym("Great,", rng)[0].isupper()
    assert synonym("GREAT", rng).isupper()
    assert synonym("zyzzyva", rng) == "zyzzyva"


def test_punctuation_noise_adds_or_strips_marks():
    (out,) = perturb_records([{"text": "a dull , boring film .", "label": "negative"}], "punctuation", rate=1.0)
    words = out["text"].split()
    assert [w[:-1] for w in words] == ["a", "dull", "boring", "film"], "lone marks are dropped"
    assert all(w[-1] in ".,;:!?" for w in words)


def test_ner_records_stay_aligned_and_entities_survive():
    for kind in ("typos", "case", "punctuation", "synonyms"):
        (out,) = perturb_records(NER, kind, rate=1.0)
        assert len(out["tokens"]) == len(out["tags"])
        assert [t for t in out["tags"] if t != "O"] == [t for t in NER[0]["tags"] if t != "O"]
        assert all(token and " " not in token for token in out["tokens"])


def test_pii_swaps_entities_and_patterns_for_fake_values_of_the_same_type(home):
    (ner,) = perturb_records(NER, "pii")
    assert len(ner["tokens"]) == len(ner["tags"])
    assert not {"Angela", "Merkel", "Siemens"} & set(ner["tokens"])
    assert [t.split("-")[1] for t in ner["tags"] if t.startswith("B-")] == ["PER", "LOC", "ORG"]
    assert ner["tokens"][ner["tags"].index("B-LOC") - 1] == "visited"

    text = {"text": "mail jane.doe@example.com or call 415-555-0132 today", "label": "neutral"}
    (swapped,) = perturb_records([text], "pii", seed=1)
    assert "jane.doe@example.com" not in swapped["text"] and "@" in swapped["text"]
    assert swapped["text"].startswith("mail ") and swapped["text"].endswith(" today")
    assert perturb_records([text], "pii", seed=1) == [swapped]


def test_sft_records_perturb_only_the_prompt():
    record = {"messages": [{"role": "user", "content": SENTENCE}, {"role": "assistant", "content": SENTENCE}]}
    (out,) = perturb_records([record], "case", rate=1.0)
    assert out["messages"][0]["content"] != SENTENCE and out["messages"][1]["content"] == SENTENCE


def test_bad_perturbation_requests_are_one_clear_error():
    assert parse_perturbations("typos, case,typos") == ["typos", "case"]
    with pytest.raises(InvalidInputError, match="unknown perturbation emoji"):
        parse_perturbations("typos,emoji")
    with pytest.raises(InvalidInputError, match="rate must be in"):
        perturb_records(CLASSIFICATION, "typos", rate=1.5)
    with pytest.raises(InvalidInputError, match="record 1 has none of"):
        perturb_records([{"sentence": "x"}], "case")
