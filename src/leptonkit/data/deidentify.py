"""PII de-identification of whole records (``--pii auto|mask|pseudonymize|drop|off``), batched for the NER model.

Defaults per task and type (``--pii auto``, ``--pii-types direct``): direct identifiers (emails, phone, card, ID,
IBAN and social security numbers, IPs, URLs, street addresses, person names) are masked; quasi-identifiers (dates,
places, organisations) are kept unless asked for, since alone they identify nobody and are often what a model must
learn (a bare year, a country in a news sentence); NER data is pseudonymised instead of masked, so a labelled name
becomes another realistic name the model can still learn from, not a ``[PERSON]`` token.

For NER records the tokens are joined (single spaces, none between two CJK tokens), spans are found on that text,
and every token a span touches is replaced as a unit: with ``mask`` by one ``[TYPE]`` token, with ``pseudonymize``
by the fake value's words (its characters, when the tokens were single CJK characters). The first new token keeps
the first old token's tag and the rest continue it (``I-X``), so tokens and tags stay aligned and the entity stays
one entity. In NER data the tags, not the detector, say where names, places and organisations are: an entity the
tags label as a type asked for (``PER`` for PERSON) is replaced whether or not the detector found it, and nothing
else is replaced as a name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from leptonkit.data.clean import repair_iob2
from leptonkit.data.records import character_level, join_tokens, record_texts
from leptonkit.errors import InvalidInputError
from leptonkit.privacy.pii import PiiDetector, PiiSpan, resolve_overlaps

PII_MODES = ("auto", "mask", "pseudonymize", "drop", "off")
DIRECT_TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP", "URL", "US_SSN", "CN_ID_CARD", "ADDRESS", "PERSON")
QUASI_TYPES = ("DATE", "LOCATION", "ORGANIZATION")
# CoNLL entity types of NER tags, as the PII types whose spans they are.
TAG_TYPES = {"PER": "PERSON", "PERSON": "PERSON", "LOC": "LOCATION", "GPE": "LOCATION", "ORG": "ORGANIZATION"}
NAME_TYPES = frozenset(TAG_TYPES.values())
WHY = {
    "direct": "direct identifiers name a person by themselves: replaced by default",
    "quasi": "quasi-identifiers (dates, places, organisations) identify nobody alone and are often what a model "
    "learns: kept unless --pii-types asks for them",
    "ner": "NER data is pseudonymised: a labelled name becomes a realistic fake name, so the model still learns "
    "names; tokens and tags stay aligned",
}


@dataclass
class Deidentified:
    record: dict | None  # None: dropped (mode drop and PII found)
    counts: Counter[str] = field(default_factory=Counter)


def check_mode(mode: str) -> str:
    if mode not in PII_MODES:
        raise InvalidInputError(f"unknown --pii {mode!r}", hint=f"use one of: {', '.join(PII_MODES)}")
    return mode


def resolve_mode(mode: str, task: str) -> str:
    """``auto`` is pseudonymize for NER data and mask for everything else."""
    return ("pseudonymize" if task == "ner" else "mask") if check_mode(mode) == "auto" else mode


def parse_types(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``--pii-types``: ``direct`` (the default), ``quasi``, ``all`` or type names, comma-separated and combined
    (``direct,LOCATION``)."""
    from leptonkit.privacy.recognizers import PII_TYPES

    items = spec.split(",") if isinstance(spec, str) else list(spec or ["direct"])
    groups = {"direct": DIRECT_TYPES, "quasi": QUASI_TYPES, "all": PII_TYPES}
    chosen: list[str] = []
    for item in (i.strip() for i in items if i.strip()):
        names = groups.get(item.lower()) or (item.upper(),)
        unknown = [n for n in names if n not in PII_TYPES]
        if unknown:
            raise InvalidInputError(
                f"unknown --pii-types entry {item!r}", hint=f"use direct, quasi, all or types: {', '.join(PII_TYPES)}"
            )
        chosen += [n for n in names if n not in chosen]
    if not chosen:
        raise InvalidInputError("--pii-types is empty", hint="use direct, quasi, all or a list of types")
    return tuple(t for t in PII_TYPES if t in chosen)


def tag_spans(tokens: Sequence[str], tags: Sequence[str], types: frozenset[str]) -> list[PiiSpan]:
    """Spans of the entities whose tags name a PII type in ``types`` (``B-PER I-PER`` -> one PERSON span)."""
    text, starts = join_tokens(tokens)
    spans: list[PiiSpan] = []
    for i, tag in enumerate(tags):
        kind = TAG_TYPES.get(tag[2:]) if tag != "O" else None
        if kind not in types:
            continue
        start, end = starts[i], starts[i] + len(tokens[i])
        last = spans[-1] if spans else None
        if tag.startswith("I-") and last is not None and last.type == kind and last.end >= start - 1:
            spans[-1] = PiiSpan(last.start, end, kind, text[last.start : end], 2.0, "tags")
        else:
            spans.append(PiiSpan(start, end, kind, text[start:end], 2.0, "tags"))
    return spans


def deidentify(records: Sequence[dict], detector: PiiDetector, mode: str) -> list[Deidentified]:
    """De-identify a batch of contract records; one detector call covers all their texts."""
    texts: list[str] = []
    owners: list[int] = []
    for i, record in enumerate(records):
        fields = record_texts(record)
        texts += fields
        owners += [i] * len(fields)
    found = detector.detect_batch(texts)
    first_text = {owner: k for k, owner in reversed(list(enumerate(owners)))}
    for i, record in enumerate(records):
        if "tokens" in record:  # one text per NER record
            k = first_text[i]
            # names, places and organisations: the tags say where they are (a rule that read "European Commission"
            # as a person would put a fake person name under ORG tags); patterns (emails, phones) still apply
            patterns = [span for span in found[k] if span.type not in NAME_TYPES]
            found[k] = resolve_overlaps([*patterns, *tag_spans(record["tokens"], record["tags"], detector.types)])
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
    _, starts = join_tokens(tokens)
    by_character = mode == "pseudonymize" and character_level(tokens)
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
        replacement = detector.replacement(span, mode)
        words = [c for c in replacement if not c.isspace()] if by_character else replacement.split()
        words = words or [f"[{span.type}]"]
        head = tags[first]
        inside = "O" if head == "O" else f"I-{head[2:]}"
        new_tokens += words
        new_tags += [head] + [inside] * (len(words) - 1)
        i = last + 1
    new_tokens += tokens[i:]
    repaired = repair_iob2(new_tags + tags[i:])  # a span that began before an entity leaves its I- tags orphaned
    return {"tokens": new_tokens, "tags": repaired[0] if repaired else new_tags + tags[i:]}
