"""PII de-identification of whole records (``--pii mask|pseudonymize|drop|off``), batched for the NER model.

For NER records the tokens are joined with single spaces, spans are found on that text, and every token a span
touches is replaced as a unit: with ``mask`` by one ``[TYPE]`` token, with ``pseudonymize`` by the fake value's
words. The first new token keeps the first old token's tag and the rest continue it (``I-X``), so tokens and tags
stay aligned and the entity stays one entity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from leptonkit.data.clean import repair_iob2
from leptonkit.data.records import record_texts
from leptonkit.errors import InvalidInputError
from leptonkit.privacy.pii import PiiDetector, PiiSpan

PII_MODES = ("mask", "pseudonymize", "drop", "off")


@dataclass
class Deidentified:
    record: dict | None  # None: dropped (mode drop and PII found)
    counts: Counter[str] = field(default_factory=Counter)


def check_mode(mode: str) -> str:
    if mode not in PII_MODES:
        raise InvalidInputError(f"unknown --pii {mode!r}", hint=f"use one of: {', '.join(PII_MODES)}")
    return mode


def deidentify(records: Sequence[dict], detector: PiiDetector, mode: str) -> list[Deidentified]:
    """De-identify a batch of contract records; one detector call covers all their texts."""
    texts: list[str] = []
    owners: list[int] = []
    for i, record in enumerate(records):
        fields = record_texts(record)
        texts += fields
        owners += [i] * len(fields)
    found = detector.detect_batch(texts)
    results = [Deidentified(dict(r)) for r in records]
    by_record: dict[int, list[tuple[str, list[PiiSpan]]]] = {}
    for owner, text, spans in zip(owners, texts, found, strict=True):
        by_record.setdefault(owner, []).append((text, spans))
        results[owner].counts.update(s.type for s in spans)
    for i, result in enumerate(results):
        if not result.counts:
            continue
        if mode == "drop":
            result.record = None
            continue
        pieces = by_record[i]
        record = records[i]
        if "messages" in record:
            result.record = {
                "messages": [
                    {**m, "content": detector.apply(text, spans, mode)}
                    for m, (text, spans) in zip(record["messages"], pieces, strict=True)
                ]
            }
        elif "tokens" in record:
            result.record = redact_tokens(record["tokens"], record["tags"], pieces[0][1], detector, mode)
        else:
            text, spans = pieces[0]
            result.record = {**record, "text": detector.apply(text, spans, mode)}
    return results


def redact_tokens(
    tokens: list[str], tags: list[str], spans: Sequence[PiiSpan], detector: PiiDetector, mode: str
) -> dict:
    """Replace the tokens each span touches (spans are on ``" ".join(tokens)``), keeping tags aligned."""
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token) + 1
    new_tokens: list[str] = []
    new_tags: list[str] = []
    i = 0
    for span in spans:
        first = next(k for k in range(len(tokens)) if starts[k] + len(tokens[k]) > span.start)
        last = max(k for k in range(len(tokens)) if starts[k] < span.end)
        if last < i:  # two spans in one token: the token is already replaced
            continue
        first = max(first, i)  # a span that starts in a replaced token still covers the tokens after it
        new_tokens += tokens[i:first]
        new_tags += tags[i:first]
        words = detector.replacement(span, mode).split() or [f"[{span.type}]"]
        head = tags[first]
        inside = "O" if head == "O" else f"I-{head[2:]}"
        new_tokens += words
        new_tags += [head] + [inside] * (len(words) - 1)
        i = last + 1
    new_tokens += tokens[i:]
    repaired = repair_iob2(new_tags + tags[i:])  # a span that began before an entity leaves its I- tags orphaned
    return {"tokens": new_tokens, "tags": repaired[0] if repaired else new_tags + tags[i:]}
