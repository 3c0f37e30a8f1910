"""Score a PII detector on a span-labelled file (presidio-research's ``synth_dataset_v2.json`` format).

Span metrics are overlap-based and type-aware: a gold span counts as found when a predicted span of the same
(mapped) type overlaps it, a prediction counts as right when it overlaps a gold span of its type. Character metrics
ask what masking achieves, whatever the type: ``char_recall`` is the share of gold PII characters inside some
predicted span, ``char_precision`` the share of predicted characters inside some gold span. Whitespace is not
counted. Gold types the detector has no counterpart for (e.g. TITLE, AGE) are listed as unscored: they count
neither as misses nor, when a prediction covers them, as false alarms.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from leptonkit.errors import InvalidInputError
from leptonkit.privacy.pii import PiiDetector
from leptonkit.privacy.recognizers import PII_TYPES

# Type names of presidio-research (and spaCy/CoNLL) as the detector's types.
TYPE_MAP = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "LOCATION": "LOCATION",
    "ORGANIZATION": "ORGANIZATION",
    "ORG": "ORGANIZATION",
    "STREET_ADDRESS": "ADDRESS",
    "ZIP_CODE": "ADDRESS",
    "ADDRESS": "ADDRESS",
    "CREDIT_CARD": "CREDIT_CARD",
    "DATE_TIME": "DATE",
    "DATE": "DATE",
    "PHONE_NUMBER": "PHONE",
    "PHONE": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "EMAIL": "EMAIL",
    "IBAN_CODE": "IBAN",
    "IBAN": "IBAN",
    "IP_ADDRESS": "IP",
    "IP": "IP",
    "US_SSN": "US_SSN",
    "CN_ID_CARD": "CN_ID_CARD",
    "DOMAIN_NAME": "URL",
    "URL": "URL",
}
PARTS = ("dev", "test")
PATTERN_TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP", "US_SSN", "CN_ID_CARD", "URL")
BATCH = 64


def load_spans_file(path: str | Path) -> list[dict]:
    """Records ``{"full_text", "spans": [{"entity_type", "start_position", "end_position"}]}`` from a JSON array."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"file {path} not found")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(records, list):
        raise InvalidInputError(f"{path}: expected a JSON array of records", hint="presidio-research format")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "full_text" not in record or not isinstance(record.get("spans"), list):
            raise InvalidInputError(f"{path}: record {i} needs full_text and spans", hint="presidio-research format")
    return records


def split_records(records: list[dict], part: str, seed: int) -> list[dict]:
    """The ``dev`` or ``test`` half of ``records``, by a seeded shuffle of their templates.

    Records of one ``template_id`` (presidio-research fills each sentence template several times) all go to the
    same half, so a detector tuned on the dev half has not seen the test half's sentences; records without a
    template are groups of their own. Shuffled groups fill the dev half until it holds at least half of the records;
    the rest is the test half. Same records and seed, same halves; file order is kept within each half.
    """
    if part not in PARTS:
        raise InvalidInputError(f"unknown part {part!r}", hint=f"use one of: {', '.join(PARTS)}")
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        template = record.get("template_id")
        groups.setdefault(f"t{template}" if template is not None else f"r{i}", []).append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    dev: set[int] = set()
    for key in keys:
        if 2 * len(dev) >= len(records):
            break
        dev.update(groups[key])
    return [r for i, r in enumerate(records) if (i in dev) == (part == "dev")]


def _chars(text: str, start: int, end: int) -> set[int]:
    return {i for i in range(start, end) if not text[i].isspace()}


def _prf(tp_pred: int, n_pred: int, tp_gold: int, n_gold: int) -> dict[str, float]:
    precision = tp_pred / n_pred if n_pred else 0.0
    recall = tp_gold / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def evaluate(records: list[dict], detector: PiiDetector) -> dict[str, Any]:
    """Precision, recall, F1 and character-level recall/precision, overall and per type; records per second."""
    texts = [r["full_text"] for r in records]
    start = time.perf_counter()
    predicted = [spans for i in range(0, len(texts), BATCH) for spans in detector.detect_batch(texts[i : i + BATCH])]
    elapsed = time.perf_counter() - start

    counts: dict[str, Counter[str]] = {t: Counter() for t in PII_TYPES}
    totals: Counter[str] = Counter()
    unscored: Counter[str] = Counter()
    for text, record, preds in zip(texts, records, predicted, strict=True):
        gold = []
        all_gold_chars: set[int] = set()
        for span in record["spans"]:
            s, e = span["start_position"], span["end_position"]
            all_gold_chars |= _chars(text, s, e)
            mapped = TYPE_MAP.get(span["entity_type"])
            if mapped is None or mapped not in detector.types:
                unscored[span["entity_type"]] += 1
            else:
                gold.append((s, e, mapped))
        pred_chars: set[int] = set()
        for p in preds:
            pred_chars |= _chars(text, p.start, p.end)
        for s, e, kind in gold:
            c = counts[kind]
            c["gold"] += 1
            c["tp_gold"] += any(p.type == kind and p.start < e and s < p.end for p in preds)
            totals["gold_any"] += 1
            totals["tp_gold_any"] += any(p.start < e and s < p.end for p in preds)
            chars = _chars(text, s, e)
            c["gold_chars"] += len(chars)
            c["gold_chars_hit"] += len(chars & pred_chars)
        for p in preds:
            c = counts[p.type]
            c["pred"] += 1
            c["tp_pred"] += any(kind == p.type and p.start < e and s < p.end for s, e, kind in gold)
            totals["tp_pred_any"] += any(p.start < e and s < p.end for s, e, _ in gold) or bool(
                _chars(text, p.start, p.end) & all_gold_chars
            )
            chars = _chars(text, p.start, p.end)
            c["pred_chars"] += len(chars)
            c["pred_chars_hit"] += len(chars & all_gold_chars)

    def summary(c: Counter[str]) -> dict[str, Any]:
        return _prf(c["tp_pred"], c["pred"], c["tp_gold"], c["gold"]) | {
            "char_recall": round(c["gold_chars_hit"] / c["gold_chars"], 4) if c["gold_chars"] else None,
            "char_precision": round(c["pred_chars_hit"] / c["pred_chars"], 4) if c["pred_chars"] else None,
            "support": c["gold"],
            "predicted": c["pred"],
        }

    overall: Counter[str] = sum(counts.values(), Counter())
    pattern: Counter[str] = sum((counts[t] for t in PATTERN_TYPES), Counter())
    n_pred = overall["pred"]
    return {
        "overall": summary(overall)
        | {"f1_any_type": _prf(totals["tp_pred_any"], n_pred, totals["tp_gold_any"], totals["gold_any"])["f1"]},
        "pattern_types": summary(pattern),
        "per_type": {t: summary(c) for t, c in counts.items() if c["gold"] or c["pred"]},
        "type_map": {k: v for k, v in TYPE_MAP.items() if k != v},
        "unscored": dict(unscored),
        "records": len(records),
        "records_per_s": round(len(records) / elapsed, 1) if elapsed else None,
        "model": detector.model_ref,
    }
