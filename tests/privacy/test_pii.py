"""The PII detector: checksummed patterns, masking, consistent pseudonyms, NER-record alignment, evaluation."""

from __future__ import annotations

import json
import time
import warnings

import pytest

from leptonkit.data import prepare
from leptonkit.data.deidentify import redact_tokens
from leptonkit.errors import InvalidInputError
from leptonkit.privacy.evaluate import evaluate, load_spans_file
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
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector(None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+x@mail.example.co.uk today", [("EMAIL", "jane.doe+x@mail.example.co.uk")]),
        ("call +1-984-182-0190x769 or (579)888-3058.", [("PHONE", "+1-984-182-0190x769"), ("PHONE", "(579)888-3058")]),
        ("card 4111 1111 1111 1111 ok", [("CREDIT_CARD", "4111 1111 1111 1111")]),
        ("iban GB82 WEST 1234 5698 7654 32.", [("IBAN", "GB82 WEST 1234 5698 7654 32")]),
        ("from 192.168.0.1 and 2001:db8::ff00:42:8329", [("IP", "192.168.0.1"), ("IP", "2001:db8::ff00:42:8329")]),
        ("see https://www.example.com/a?b=1.", [("URL", "https://www.example.com/a?b=1")]),
        ("ssn 125-17-4954", [("US_SSN", "125-17-4954")]),
        ("born 7/14/1995 on a Tuesday", [("DATE", "7/14/1995"), ("DATE", "Tuesday")]),
        ("ship to 24 Clarke Avenue, Suite 464", [("ADDRESS", "24 Clarke Avenue, Suite 464")]),
        ("moved to Austria", [("LOCATION", "Austria")]),
        ("at Via Franscini 71 or Søndergade 52", [("ADDRESS", "Via Franscini 71"), ("ADDRESS", "Søndergade 52")]),
        (
            "send it to 6750 Koskikatu 25 Apt. 864\nArtilleros\n, CO\n Uruguay 64677 please",
            [("ADDRESS", "6750 Koskikatu 25 Apt. 864\nArtilleros\n, CO\n Uruguay 64677")],
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
    text = "Hi, I'm at 555-123-4567 until Friday; mail me at bob@example.org."
    start = time.perf_counter()
    for _ in range(200):
        detector.redact(text)
    assert (time.perf_counter() - start) / 200 < 0.002


def test_without_a_model_names_are_not_detected_and_a_warning_says_so(home):
    with pytest.warns(UserWarning, match="names, places and organisations are not detected"):
        detector = PiiDetector()
    assert not detector.names_detected and detector.model_ref is None


def test_ner_redaction_keeps_tokens_and_tags_aligned(detector):
    tokens = ["Mail", "John", "at", "john@x.io", "or", "555-123-4567", "now"]
    tags = ["O", "B-PER", "O", "O", "O", "O", "O"]
    spans = detector.detect(" ".join(tokens))
    masked = redact_tokens(tokens, tags, spans, detector, "mask")
    assert masked == {"tokens": ["Mail", "John", "at", "[EMAIL]", "or", "[PHONE]", "now"], "tags": tags}
    touching = [PiiSpan(0, 7, "EMAIL", "a@b.io,", 1.0, "t"), PiiSpan(5, 13, "PHONE", "io,555 1", 1.0, "t")]
    joined = redact_tokens(["a@b.io,555", "1234", "end"], ["O", "O", "O"], touching, detector, "mask")
    assert joined == {"tokens": ["[EMAIL]", "[PHONE]", "end"], "tags": ["O", "O", "O"]}  # nothing left in clear
    date_tokens, date_tags = ["Seen", "Tuesday", "in", "Paris"], ["O", "B-MISC", "O", "B-LOC"]
    keyed = PiiDetector(None, key="k")
    fake = redact_tokens(date_tokens, date_tags, keyed.detect(" ".join(date_tokens)), keyed, "pseudonymize")
    assert len(fake["tokens"]) == len(fake["tags"])
    assert fake["tags"][:2] == ["O", "B-MISC"] and all(t == "I-MISC" for t in fake["tags"][2:-2])
    assert fake["tokens"][-2:] == ["in", "Paris"] and fake["tags"][-2:] == ["O", "B-LOC"]


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
    assert masked["warnings"] and not masked["pii"]["names_detected"]
    assert "user0@example.com" not in (tmp_path / "p" / "train.jsonl").read_text() and fake["pii"]["key"] == "given"
    assert dropped["dropped"] == {"pii": 6} and dropped["rows"]["out"] == 6


def test_pii_eval_on_the_presidio_file_meets_the_pattern_target(detector):
    records = load_spans_file(shared_data("pii", "synth_dataset_v2.json"))
    result = evaluate(records, detector)
    assert result["pattern_types"]["char_recall"] >= 0.98
    assert result["pattern_types"]["char_precision"] >= 0.95
    assert result["per_type"]["PERSON"]["recall"] == 0.0  # no model: names are honestly missed
    assert result["type_map"]["GPE"] == "LOCATION" and result["unscored"]["TITLE"] == 92
    assert result["records"] == 1500 and result["records_per_s"] > 100


def _model(text: str, value: str, kind: str) -> PiiSpan:
    start = text.index(value)
    return PiiSpan(start, start + len(value), kind, value, 0.7, "model")


def test_model_names_inside_an_address_become_part_of_it():
    """A street written name first (``20789 Allika 46``) and a town the model called a company, between the street
    and the country, are one ADDRESS; a name after an address with nothing of the address after it stays a name."""
    text = "William Hughes\n\n20789 Allika 46\n Suite 501\n Riisa\n\n Estonia 62488"
    model = [_model(text, "William Hughes", "PERSON"), _model(text, "Allika", "ORGANIZATION")]
    model.append(_model(text, "Riisa", "ORGANIZATION"))
    streets = model_streets(text, model)
    assert [s.value for s in streets] == ["20789 Allika 46"]
    spans = merge_addresses(text, resolve_overlaps(_pattern_spans(text, frozenset(PII_TYPES)) + model + streets))
    assert [(s.type, s.value) for s in spans] == [("PERSON", "William Hughes"), ("ADDRESS", text[16:])]
    text = "Arsenal 2 Chelsea 1\nShe lives at 12 Main Street, Anna Berg said."
    model = [_model(text, "Arsenal", "ORGANIZATION"), _model(text, "Chelsea", "ORGANIZATION")]
    model.append(_model(text, "Anna Berg", "PERSON"))
    assert model_streets(text, model) == []  # a score, not a street
    spans = merge_addresses(text, resolve_overlaps(_pattern_spans(text, frozenset(PII_TYPES)) + model))
    assert ("PERSON", "Anna Berg") in [(s.type, s.value) for s in spans]


def test_military_and_po_box_addresses():
    text = "PSC 0413, Box 8144\nAPO AA 42323 and P.O. Box 149"
    spans = PiiDetector(None).detect(text)
    assert [(s.type, s.value) for s in spans] == [
        ("ADDRESS", "PSC 0413, Box 8144\nAPO AA 42323"),
        ("ADDRESS", "P.O. Box 149"),
    ]
