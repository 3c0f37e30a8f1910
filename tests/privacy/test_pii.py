"""The PII detector: checksummed patterns, masking, consistent pseudonyms, NER-record alignment, evaluation."""

from __future__ import annotations

import json
import re
import time
import warnings

import pytest

from leptonkit.data import prepare
from leptonkit.data.deidentify import redact_tokens
from leptonkit.errors import InvalidInputError
from leptonkit.privacy.evaluate import PARTS, evaluate, load_spans_file, split_records
from leptonkit.privacy.pii import (
    PiiDetector,
    PiiSpan,
    Pseudonymizer,
    _pattern_spans,
    merge_addresses,
    model_streets,
    resolve_overlaps,
)
from leptonkit.privacy.recognizers import PII_TYPES, iban_ok, luhn_ok
from tests.conftest import sample


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector(None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to mara.quist+bills@post.example.org today", [("EMAIL", "mara.quist+bills@post.example.org")]),
        ("call +44 20 7946 0958 or (212) 555-0147.", [("PHONE", "+44 20 7946 0958"), ("PHONE", "(212) 555-0147")]),
        ("card 5500 0000 0000 0004 ok", [("CREDIT_CARD", "5500 0000 0000 0004")]),
        ("iban DE89 3704 0044 0532 0130 00.", [("IBAN", "DE89 3704 0044 0532 0130 00")]),
        ("from 10.42.7.19 and fe80::1c2d:3e4f:5a6b:7c8d", [("IP", "10.42.7.19"), ("IP", "fe80::1c2d:3e4f:5a6b:7c8d")]),
        ("see https://docs.example.net/setup?step=2.", [("URL", "https://docs.example.net/setup?step=2")]),
        ("docs on kivi-group.info, not config.in or e.g. 3.14", [("URL", "kivi-group.info")]),
        ("mail ruth@kivi.example.com", [("EMAIL", "ruth@kivi.example.com")]),
        ("ssn 512-48-3391", [("US_SSN", "512-48-3391")]),
        ("born 3/9/1987 on a Wednesday", [("DATE", "3/9/1987"), ("DATE", "Wednesday")]),
        ("ship to 118 Larkspur Lane, Suite 12", [("ADDRESS", "118 Larkspur Lane, Suite 12")]),
        ("moved to Lithuania", [("LOCATION", "Lithuania")]),
        ("at Via Solferino 3 or Vesterbrogade 41", [("ADDRESS", "Via Solferino 3"), ("ADDRESS", "Vesterbrogade 41")]),
        ("at Petőfi Sándor u. 8.", [("ADDRESS", "Petőfi Sándor u. 8.")]),
        (
            "post it to 52 Hämeenkatu 9 Apt. 3\nNokia\n, PI\n Latvia 33100 please",
            [("ADDRESS", "52 Hämeenkatu 9 Apt. 3\nNokia\n, PI\n Latvia 33100")],
        ),
    ],
)
def test_pattern_types_are_found_with_exact_spans(detector, text, expected):
    spans = detector.detect(text)
    assert [(s.type, s.value) for s in spans] == expected
    assert all(text[s.start : s.end] == s.value for s in spans)


def test_checksums_reject_look_alikes(detector):
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    text = "order 4111111111111112, iban GB82WEST12345698765433, ip 999.1.1.1, ssn 000-12-3456"
    assert [s.type for s in detector.detect(text) if s.type in ("CREDIT_CARD", "IBAN", "IP", "US_SSN")] == []
    assert luhn_ok("001-518-180-0010")  # Luhn-valid by chance, but grouped like a phone number
    assert [(s.type, s.value) for s in detector.detect("call 001-518-180-0010")] == [("PHONE", "001-518-180-0010")]


def test_mask_and_consistent_pseudonyms(detector):
    text = "mail a@b.io, then a@b.io again, or c@d.io"
    assert detector.redact(text) == "mail [EMAIL], then [EMAIL] again, or [EMAIL]"
    keyed = PiiDetector(None, key="k1")
    out = keyed.redact(text, "pseudonymize")
    fakes = [w.rstrip(",") for w in out.split() if "@" in w]
    assert fakes[0] == fakes[1] != fakes[2] and "a@b.io" not in out
    assert PiiDetector(None, key="k1").redact(text, "pseudonymize") == out  # same key, same fakes
    assert PiiDetector(None, key="k2").redact(text, "pseudonymize") != out
    assert Pseudonymizer("k").fake("PERSON", "Ann Lee") == Pseudonymizer("k").fake("PERSON", "Ann Lee")
    with pytest.raises(InvalidInputError, match="unknown redaction mode"):
        detector.redact(text, "shred")


def test_short_strings_are_fast(detector):
    text = "Hi, I'm at 555-123-4567 until noon; mail me at bob@example.org."
    start = time.perf_counter()
    for _ in range(200):
        detector.redact(text)
    assert (time.perf_counter() - start) / 200 < 0.002


class WordListModel:
    """An entity model in plain Python: each listed word is an entity of its type, wherever it stands."""

    ref = "word-list"

    def __init__(self, words: dict[str, str]) -> None:
        self.words = words
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> list[list[dict]]:
        self.calls.append(texts)
        return [
            [
                {"type": kind, "start": m.start(), "end": m.end(), "score": 0.9}
                for word, kind in self.words.items()
                for m in re.finditer(re.escape(word), text)
            ]
            for text in texts
        ]


def test_an_entity_model_names_people_places_and_organisations_line_by_line():
    model = WordListModel({"Ruth": "PER", "K": "PER", "Oyelaran": "PER", "Tampere": "LOC", "Kivi Oy": "ORG"})
    detector = PiiDetector(model, key="k")
    text = "Ruth K. Oyelaran\nKivi Oy, Tampere\nmail ruth@kivi.example"
    spans = detector.detect(text)
    assert [(s.type, s.value, s.source) for s in spans] == [
        ("PERSON", "Ruth K. Oyelaran", "model"),  # three fragments on one line: one name
        ("ORGANIZATION", "Kivi Oy", "model"),
        ("LOCATION", "Tampere", "model"),
        ("EMAIL", "ruth@kivi.example", "pattern"),
    ]
    assert model.calls == [["Ruth K. Oyelaran", "Kivi Oy, Tampere", "mail ruth@kivi.example"]]  # one call, by line
    assert detector.names_detected and detector.model_ref == "word-list"
    assert detector.redact(text) == "[PERSON]\n[ORGANIZATION], [LOCATION]\nmail [EMAIL]"
    assert PiiDetector(model, types=["EMAIL"]).detect(text) == [spans[-1]]  # types not asked for: model unused
    assert len(model.calls) == 2


def test_ner_redaction_keeps_tokens_and_tags_aligned(detector):
    tokens = ["Mail", "Hedda", "at", "hedda@x.io", "or", "555-123-4567", "now"]
    tags = ["O", "B-PER", "O", "O", "O", "O", "O"]
    spans = detector.detect(" ".join(tokens))
    masked = redact_tokens(tokens, tags, spans, detector, "mask")
    assert masked == {"tokens": ["Mail", "Hedda", "at", "[EMAIL]", "or", "[PHONE]", "now"], "tags": tags}
    touching = [PiiSpan(0, 7, "EMAIL", "a@b.io,", 1.0, "t"), PiiSpan(5, 13, "PHONE", "io,555 1", 1.0, "t")]
    joined = redact_tokens(["a@b.io,555", "1234", "end"], ["O", "O", "O"], touching, detector, "mask")
    assert joined == {"tokens": ["[EMAIL]", "[PHONE]", "end"], "tags": ["O", "O", "O"]}  # nothing left in clear
    date_tokens, date_tags = ["Seen", "Wednesday", "in", "Lyon"], ["O", "B-MISC", "O", "B-LOC"]
    keyed = PiiDetector(None, key="k")
    fake = redact_tokens(date_tokens, date_tags, keyed.detect(" ".join(date_tokens)), keyed, "pseudonymize")
    assert len(fake["tokens"]) == len(fake["tags"])
    assert fake["tags"][:2] == ["O", "B-MISC"] and all(t == "I-MISC" for t in fake["tags"][2:-2])
    assert fake["tokens"][-2:] == ["in", "Lyon"] and fake["tags"][-2:] == ["O", "B-LOC"]


def test_prepare_masks_pseudonymizes_or_drops(tmp_path, home):
    rows = [
        {"text": f"ticket {i}: call me at 555-123-{4000 + i} or mail user{i}@example.com", "label": str(i % 2)}
        for i in range(6)
    ] + [{"text": f"clean row number {i} here", "label": str(i % 2)} for i in range(6)]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masked = prepare([src], task="classification", out=tmp_path / "m", split="1,0", dedup="off")
        fake = prepare([src], task="classification", out=tmp_path / "p", split="1,0", pii="pseudonymize", pii_key="k")
        dropped = prepare([src], task="classification", out=tmp_path / "d", split="1,0", pii="drop")
    assert masked["pii"]["counts"] == {"EMAIL": 6, "PHONE": 6} and masked["pii"]["records_with_pii"] == 6
    assert "[PHONE] or mail [EMAIL]" in (tmp_path / "m" / "train.jsonl").read_text()
    assert masked["warnings"] and masked["pii"]["names_by"].startswith("word lists")
    assert "user0@example.com" not in (tmp_path / "p" / "train.jsonl").read_text() and fake["pii"]["key"] == "given"
    assert dropped["dropped"] == {"pii": 6} and dropped["rows"]["out"] == 6


def test_pii_eval_on_the_sample_file_meets_the_pattern_target(detector):
    records = load_spans_file(sample("pii", "synthetic_pii.json"))
    records.append({"full_text": "Dr. Ines Alva, 41, called.", "spans": [
        {"entity_type": "TITLE", "start_position": 0, "end_position": 3},
        {"entity_type": "PERSON", "start_position": 4, "end_position": 13},
        {"entity_type": "AGE", "start_position": 15, "end_position": 17},
    ]})  # fmt: skip
    result = evaluate(records, detector)
    assert result["pattern_types"]["char_recall"] >= 0.98
    assert result["pattern_types"]["char_precision"] >= 0.95
    assert result["per_type"]["PERSON"]["recall"] >= 0.6  # no model: word lists and context rules
    assert result["type_map"]["GPE"] == "LOCATION" and result["unscored"] == {"TITLE": 1, "AGE": 1}
    assert result["records"] == len(records) and result["records_per_s"] > 100


def test_the_dev_and_test_halves_split_by_template_once_and_for_all():
    records = [{"full_text": f"row {i}", "spans": [], "template_id": i % 9} for i in range(60)]
    records += [{"full_text": f"loose {i}", "spans": []} for i in range(6)]  # no template: a group each
    dev, test = (split_records(records, part, seed=7) for part in PARTS)
    assert len(dev) + len(test) == len(records) and 33 <= len(dev) <= 33 + 7
    assert {r["full_text"] for r in dev}.isdisjoint(r["full_text"] for r in test)
    templates = [{r.get("template_id") for r in half} - {None} for half in (dev, test)]
    assert templates[0] and templates[1] and templates[0].isdisjoint(templates[1])
    assert split_records(records, "dev", seed=7) == dev  # the same seed, the same half
    assert [split_records(records, "dev", seed=s) != dev for s in range(8, 12)].count(True) >= 3
    assert dev == [r for r in records if r in dev]  # file order kept
    with pytest.raises(InvalidInputError, match="unknown part"):
        split_records(records, "train", seed=7)


def _model(text: str, value: str, kind: str) -> PiiSpan:
    start = text.index(value)
    return PiiSpan(start, start + len(value), kind, value, 0.7, "model")


def test_model_names_inside_an_address_become_part_of_it():
    """A street written name first (``5190 Rüütli 17``) and a town the model called a company, between the street
    and the country, are one ADDRESS; a name after an address with nothing of the address after it stays a name."""
    text = "Marta Kowal\n\n5190 Rüütli 17\n Suite 7\n Valga\n\n Lithuania 44291"
    model = [_model(text, "Marta Kowal", "PERSON"), _model(text, "Rüütli", "ORGANIZATION")]
    model.append(_model(text, "Valga", "ORGANIZATION"))
    streets = model_streets(text, model)
    assert [s.value for s in streets] == ["5190 Rüütli 17"]
    spans = merge_addresses(text, resolve_overlaps(_pattern_spans(text, frozenset(PII_TYPES)) + model + streets))
    assert [(s.type, s.value) for s in spans] == [("PERSON", "Marta Kowal"), ("ADDRESS", text[13:])]
    text = "Arsenal 2 Fulham 1\nShe lives at 12 Birch Road, Liv Ekberg said."
    model = [_model(text, "Arsenal", "ORGANIZATION"), _model(text, "Fulham", "ORGANIZATION")]
    model.append(_model(text, "Liv Ekberg", "PERSON"))
    assert model_streets(text, model) == []  # a score, not a street
    spans = merge_addresses(text, resolve_overlaps(_pattern_spans(text, frozenset(PII_TYPES)) + model))
    assert ("PERSON", "Liv Ekberg") in [(s.type, s.value) for s in spans]


def test_military_and_po_box_addresses():
    text = "PSC 2291, Box 310\nAPO AE 09512 and P.O. Box 77"
    spans = PiiDetector(None).detect(text)
    assert [(s.type, s.value) for s in spans] == [
        ("ADDRESS", "PSC 2291, Box 310\nAPO AE 09512"),
        ("ADDRESS", "P.O. Box 77"),
    ]
