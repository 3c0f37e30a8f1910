"""Detect and de-identify PII in text: patterns and gazetteers for structured values, an NER model for names.

One detector serves three callers: ``data prepare`` (training data), request logging and the serving safety filter.
``PiiDetector(None).redact("mail me at a@b.io")`` -> ``"mail me at [EMAIL]"``. Common person names and places, in
English and Chinese, are found with no setup by word lists and context rules (:mod:`leptonkit.privacy.names`); an
NER model (an :class:`EntityModel`) finds more, and organisations: with one, it replaces the rules for Latin-script
text (the Chinese rules stay). This module is a foundation and knows no registry: the registry's NER
model (by default the version aliased ``@pii``, which ``leptonkit data pii-setup`` builds) is found and wrapped by
:func:`leptonkit.registry.pii.pii_detector`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any, ClassVar, Protocol

from leptonkit.errors import InvalidInputError
from leptonkit.privacy.names import rule_spans
from leptonkit.privacy.recognizers import (
    CJK_SEPARATED_TYPES,
    CN_RECOGNIZERS,
    PII_TYPES,
    RECOGNIZERS,
    cjk_as_separators,
    cn_id_check_digit,
    cn_mobile_ok,
)

PII_ALIAS = "pii"
MODES = ("mask", "pseudonymize")
NO_MODEL_WARNING = (
    "no NER model aliased @pii in the registry: names and places are found from word lists and context rules only "
    "(common names; a surname alone or an unlisted name without a cue is missed; organisations are not detected); "
    "build a model with `leptonkit data pii-setup`, or pass --pii-model REF"
)
# Types the built-in word lists and context rules find (privacy/names.py).
RULE_TYPES = frozenset({"PERSON", "LOCATION", "ADDRESS"})
# CoNLL-style entity types of an NER model, as PII types; other types (e.g. MISC) are not PII here.
MODEL_TYPES = {
    "PER": "PERSON",
    "PERSON": "PERSON",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "LOCATION": "LOCATION",
    "ORG": "ORGANIZATION",
    "ORGANIZATION": "ORGANIZATION",
}
# A model span's score is its probability times this: a confident name beats a gazetteer hit or a bare year, but
# never a validated structure (an address, an email) it overlaps, which would otherwise be left half unmasked.
MODEL_WEIGHT = 0.75
# Texts longer than this are split at whitespace for the NER model, whose input is truncated at 512 tokens.
MODEL_CHUNK_CHARS = 1200


class EntityModel(Protocol):
    """An NER model as the detector uses it: ``ref`` names it; called on texts, it returns each text's entities as
    ``{"type", "start", "end", "score"}`` dicts with character offsets (``leptonkit.inference.extract_entities``)."""

    ref: str

    def __call__(self, texts: list[str]) -> list[list[dict]]: ...


@dataclass(frozen=True)
class PiiSpan:
    """One PII occurrence: ``text[start:end] == value``; ``source`` is pattern, gazetteer or model."""

    start: int
    end: int
    type: str
    value: str
    score: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def _location_gazetteer() -> re.Pattern[str]:
    """Country and US state names from Faker's locale data, longest first, as one case-sensitive pattern."""
    from faker.providers.address.en_US import Provider

    names = {*Provider.countries, *Provider.states, "USA", "UK", "U.S.", "U.K."}
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def _pattern_spans(text: str, types: frozenset[str]) -> list[PiiSpan]:
    """Pattern and gazetteer spans, the Chinese recognizers' included. In text with CJK characters, emails, URLs,
    IPs, cards and IBANs are found with those characters read as separators, so ``联系a@b.cn谢谢`` finds the email
    that ``\\w`` boundaries, which count Chinese characters as word characters, would hide or overrun."""
    separated = cjk_as_separators(text)
    # In CJK text these types are read only with the separators: ``\w`` would pull Chinese words into an email.
    skip = CJK_SEPARATED_TYPES if separated is not None else frozenset()
    spans = [
        PiiSpan(start, end, rec.type, text[start:end], rec.score, "pattern")
        for rec in (*RECOGNIZERS, *CN_RECOGNIZERS)
        if rec.type in types and (rec.type not in skip or rec in CN_RECOGNIZERS)
        for start, end in rec.find(text)
    ]
    if separated is not None:
        spans += [
            PiiSpan(start, end, rec.type, text[start:end], rec.score, "pattern")
            for rec in RECOGNIZERS
            if rec.type in types & CJK_SEPARATED_TYPES
            for start, end in rec.find(separated)
        ]
    if "LOCATION" in types:
        spans += [
            PiiSpan(m.start(), m.end(), "LOCATION", m.group(), 0.6, "gazetteer")
            for m in _location_gazetteer().finditer(text)
        ]
    return spans


def resolve_overlaps(spans: Sequence[PiiSpan]) -> list[PiiSpan]:
    """Non-overlapping spans, sorted by position, that still cover every character any span covered.

    Overlapping spans of one type become their union. Across types the highest score, then the longest, wins the
    shared characters; what a losing span covers beyond the winner stays a span of its own type (trimmed of spaces
    and punctuation), so a name that runs into an email address is never left half unmasked.
    """
    united: list[PiiSpan] = []
    for span in sorted(spans, key=lambda s: (s.type, s.start)):
        last = united[-1] if united else None
        if last is not None and last.type == span.type and span.start < last.end:
            end = max(last.end, span.end)
            value = last.value + span.value[last.end - span.start :] if span.end > last.end else last.value
            united[-1] = PiiSpan(last.start, end, last.type, value, max(last.score, span.score), last.source)
        else:
            united.append(span)
    chosen: list[PiiSpan] = []
    for span in sorted(united, key=lambda s: (-s.score, s.start - s.end, s.start)):
        chosen.extend(_uncovered(span, chosen))
    return sorted(chosen, key=lambda s: s.start)


def _uncovered(span: PiiSpan, chosen: Sequence[PiiSpan]) -> list[PiiSpan]:
    """The pieces of ``span`` outside every chosen span that still hold a letter or digit."""
    overlapping = [k for k in chosen if k.start < span.end and span.start < k.end]
    if not overlapping:
        return [span]
    pieces, start = [], span.start
    for kept in sorted(overlapping, key=lambda k: k.start):
        pieces.append((start, kept.start))
        start = max(start, kept.end)
    pieces.append((start, span.end))
    out = []
    for a, b in pieces:
        if b <= a:
            continue
        value = span.value[a - span.start : b - span.start]
        stripped = value.strip(_TRIM)
        if any(c.isalnum() for c in stripped):
            a += len(value) - len(value.lstrip(_TRIM))
            out.append(PiiSpan(a, a + len(stripped), span.type, stripped, span.score, span.source))
    return out


_TRIM = " \t\n.,;:!?()[]{}'\"-@"


# Between two parts of one postal address: up to three words (a town, a state code), commas, line breaks.
_ADDRESS_GAP = re.compile(r"[\s,]*(?:[^\W\d_][\w.'()-]*[\s,]*){0,3}")


def _address_gap(text: str, before: PiiSpan, after: PiiSpan) -> bool:
    gap = text[before.end : after.start]
    return bool(_ADDRESS_GAP.fullmatch(gap)) and ("\n" in gap or "," in gap or not gap.strip())


# An address span this sure is a street (not a bare five-digit number that may be a postcode).
_STREET_SCORE = 0.5


def merge_addresses(text: str, spans: list[PiiSpan]) -> list[PiiSpan]:
    """Join an address with the town, region, country and postcode that follow it into one ADDRESS span.

    ``31 Orchard Row\nYork, UK 55120`` is one address, not an address, a place and a number: masked as one,
    nothing between the parts (the town name) is left in clear. Only parts that follow an address are joined. A
    name the NER model read as a person or organisation is joined too when it sits between a street and a later
    part of the same address (``Hämeenkatu 9\nNokia\n, PI\n Latvia 33100``: the town, not the company).
    """
    merged: list[PiiSpan] = []
    for i, span in enumerate(spans):
        last = merged[-1] if merged else None
        joins = (
            last is not None
            and last.type == "ADDRESS"
            and _address_gap(text, last, span)
            and (
                span.type in ("ADDRESS", "LOCATION")
                or (last.score >= _STREET_SCORE and span.source == "model" and _address_part_follows(text, spans, i))
            )
        )
        if last is not None and joins:
            merged[-1] = PiiSpan(last.start, span.end, "ADDRESS", text[last.start : span.end], last.score, last.source)
        else:
            merged.append(span)
    return merged


def _address_part_follows(text: str, spans: list[PiiSpan], i: int) -> bool:
    """Whether, after model spans only, an ADDRESS or LOCATION part follows ``spans[i]`` as an address continues."""
    for before, after in zip(spans[i:], spans[i + 1 :], strict=False):
        if not _address_gap(text, before, after):
            return False
        if after.type in ("ADDRESS", "LOCATION"):
            return True
        if after.source != "model":
            return False
    return False


# A street written name first, house number last, after a building number: ``3871 Rüütli 17``, ``38 Egevænget
# 4,``. The NER model finds the name (as a place, person or organisation); the numbers around it make it a street.
_BUILDING_BEFORE = re.compile(r"(?<![\w.,:/-])\d{1,6}[A-Za-z]?\s+$")
_HOUSE_AFTER = re.compile(r"^\s+\d{1,4}[A-Za-z]?\.?(?![\w.,:/-]|[.,:/-]\d)")


def model_streets(text: str, model_spans: Sequence[PiiSpan]) -> list[PiiSpan]:
    """ADDRESS spans for model entities framed by a building number before and a house number after."""
    out = []
    for span in model_spans:
        before = _BUILDING_BEFORE.search(text, max(0, span.start - 12), span.start)
        after = _HOUSE_AFTER.match(text[span.end : span.end + 12])
        if before is None or after is None or "\n" in text[before.start() : span.start]:
            continue
        if any(
            o is not span and before.start() - 2 <= o.end <= before.start() and "\n" not in text[o.end : before.start()]
            for o in model_spans
        ):
            continue  # a name just before the number: a score or a list ("Arsenal 2 Fulham 1"), not a street
        end = span.end + after.end()
        out.append(PiiSpan(before.start(), end, "ADDRESS", text[before.start() : end], 0.8, "model"))
    return out


# What may separate two pieces of one name on a line: "Ruth K. Oyelaran" can come out as Ruth / K / Oyelaran.
_NAME_GAP = re.compile(r"[ .'-]{1,3}")


def _join_fragments(text: str, spans: list[PiiSpan]) -> list[PiiSpan]:
    """Join model entities of one type that only a space, initial's dot or hyphen separates (one name, not three)."""
    joined: list[PiiSpan] = []
    for span in sorted(spans, key=lambda s: s.start):
        last = joined[-1] if joined else None
        if last is not None and last.type == span.type and _NAME_GAP.fullmatch(text[last.end : span.start]):
            score = min(last.score, span.score)
            joined[-1] = PiiSpan(last.start, span.end, span.type, text[last.start : span.end], score, "model")
        else:
            joined.append(span)
    return joined


def _chunks(text: str) -> list[tuple[int, str]]:
    """``(offset, piece)`` pieces for the NER model: one per line (a name, a job title and a town on three lines of
    a signature or an address are three fields, never one entity), long lines cut at whitespace into pieces of at
    most MODEL_CHUNK_CHARS."""
    pieces = []
    for line in re.finditer(r"[^\n]+", text):
        offset, rest = line.start(), line.group()
        while len(rest) > MODEL_CHUNK_CHARS:
            cut = max(rest.rfind(c, MODEL_CHUNK_CHARS // 2, MODEL_CHUNK_CHARS) for c in " \t")
            cut = cut if cut > 0 else MODEL_CHUNK_CHARS
            pieces.append((offset, rest[:cut]))
            offset, rest = offset + cut, rest[cut:]
        pieces.append((offset, rest))
    return pieces


def _fake_cn_id(faker: Any) -> str:
    """A well-formed (checksummed) 18-digit resident ID number from Faker's seeded random state."""
    born = faker.date_of_birth(minimum_age=18, maximum_age=80)
    first17 = f"{faker.random_element(('110101', '310104', '440305', '510107'))}{born:%Y%m%d}"
    first17 += f"{faker.random_int(0, 999):03d}"
    return first17 + cn_id_check_digit(first17)


class Pseudonymizer:
    """A consistent fake value per real value: HMAC(key, type, value) seeds Faker, so one key, one mapping.

    The same person is the same fake person across a whole dataset (and across datasets prepared with the same
    key); without a key a random one is drawn, so the mapping cannot be recomputed from a guessed value. A value in
    Chinese (or a mainland mobile number) gets a fake from Faker's ``zh_CN`` locale: 王秀英 becomes another Chinese
    name, not an English one.
    """

    GENERATORS: ClassVar[dict[str, Callable[[Any, str], str]]] = {
        "PERSON": lambda f, v: f.name(),
        "LOCATION": lambda f, v: f.city(),
        "ORGANIZATION": lambda f, v: f.company(),
        "ADDRESS": lambda f, v: f.street_address(),
        "EMAIL": lambda f, v: f.email(),
        "PHONE": lambda f, v: f.phone_number(),
        "CREDIT_CARD": lambda f, v: f.credit_card_number(),
        "IBAN": lambda f, v: f.iban(),
        "IP": lambda f, v: f.ipv6() if ":" in v else f.ipv4(),
        "URL": lambda f, v: f.url(),
        "US_SSN": lambda f, v: f.ssn(),
        "CN_ID_CARD": lambda f, v: _fake_cn_id(f),
        "DATE": lambda f, v: f.date(),
    }
    # zh_CN's own street addresses read "冯路O座": a city, a district and a numbered street read like real ones.
    ZH_GENERATORS: ClassVar[dict[str, Callable[[Any, str], str]]] = {
        "ADDRESS": lambda f, v: f"{f.city_name()}市{f.district()}区{f.street_name()}{f.random_int(1, 999)}号",
        "LOCATION": lambda f, v: f.city_name(),
    }

    def __init__(self, key: str | bytes | None = None) -> None:
        from faker import Faker

        self.keyed = key is not None
        self._key = key.encode() if isinstance(key, str) else (key or secrets.token_bytes(32))
        self._fakers = {"en": Faker("en_US"), "zh": Faker("zh_CN")}
        self._cache: dict[tuple[str, str], str] = {}

    def fake(self, pii_type: str, value: str) -> str:
        cached = self._cache.get((pii_type, value))
        if cached is None:
            digest = hmac.new(self._key, f"{pii_type}\0{value}".encode(), hashlib.sha256).digest()
            chinese = cjk_as_separators(value) is not None or (pii_type == "PHONE" and cn_mobile_ok(value))
            faker = self._fakers["zh" if chinese else "en"]
            faker.seed_instance(int.from_bytes(digest[:8], "big"))
            generator = (self.ZH_GENERATORS if chinese else {}).get(pii_type) or self.GENERATORS.get(pii_type)
            cached = generator(faker, value) if generator else f"[{pii_type}]"
            self._cache[(pii_type, value)] = cached
        return cached


class PiiDetector:
    """Find PII spans in text and mask or pseudonymize them.

    ``model``: an :class:`EntityModel` for PERSON/LOCATION/ORGANIZATION, or ``None`` for patterns, gazetteers and
    the name rules (:func:`leptonkit.registry.pii.pii_detector` gives a detector with a registry model, ``@pii`` by
    default). ``rules=False`` turns the word-list and context rules for names, places and Chinese addresses off.
    """

    def __init__(
        self,
        model: EntityModel | None = None,
        *,
        types: Sequence[str] | None = None,
        key: str | bytes | None = None,
        rules: bool = True,
    ) -> None:
        unknown = sorted(set(types or ()) - set(PII_TYPES))
        if unknown:
            raise InvalidInputError(f"unknown PII type(s) {', '.join(unknown)}", hint=f"known: {', '.join(PII_TYPES)}")
        self.types = frozenset(types or PII_TYPES)
        self.model = model
        self.model_ref = model.ref if model is not None else None
        self.rules = rules
        self._key = key
        self._pseudonymizer: Pseudonymizer | None = None

    @property
    def names_detected(self) -> bool:
        return self.model_ref is not None or (self.rules and "PERSON" in self.types)

    @property
    def pseudonymizer(self) -> Pseudonymizer:
        if self._pseudonymizer is None:
            self._pseudonymizer = Pseudonymizer(self._key)
        return self._pseudonymizer

    def detect(self, text: str) -> list[PiiSpan]:
        """PII spans in ``text``, non-overlapping, sorted by position."""
        return self.detect_batch([text])[0]

    def detect_batch(self, texts: Sequence[str]) -> list[list[PiiSpan]]:
        """Spans for many texts; the NER model (if any) runs batched over all of them at once."""
        found = [_pattern_spans(text, self.types) for text in texts]
        if self.rules and self.types & RULE_TYPES:
            for text, spans in zip(texts, found, strict=True):
                spans += [
                    PiiSpan(f.start, f.end, f.type, text[f.start : f.end], f.score, "rules")
                    for f in rule_spans(text, latin=self.model is None)
                    if f.type in self.types
                ]
        if self.model is not None and self.types & {"PERSON", "LOCATION", "ORGANIZATION"}:
            for text, spans, model_spans in zip(texts, found, self._model_spans(self.model, texts), strict=True):
                spans.extend(model_spans)
                if "ADDRESS" in self.types:
                    spans.extend(model_streets(text, model_spans))
        return [merge_addresses(text, resolve_overlaps(spans)) for text, spans in zip(texts, found, strict=True)]

    def _model_spans(self, model: EntityModel, texts: Sequence[str]) -> list[list[PiiSpan]]:
        pieces = [
            (i, offset, piece) for i, text in enumerate(texts) for offset, piece in _chunks(text) if piece.strip()
        ]
        results: list[list[PiiSpan]] = [[] for _ in texts]
        if not pieces:
            return results
        entities = model([piece for _, _, piece in pieces])
        for (i, offset, _), found in zip(pieces, entities, strict=True):
            for ent in found:
                pii_type = MODEL_TYPES.get(ent["type"].upper())
                if pii_type in self.types:
                    start, end = offset + ent["start"], offset + ent["end"]
                    score = MODEL_WEIGHT * float(ent["score"])
                    results[i].append(PiiSpan(start, end, pii_type, texts[i][start:end], score, "model"))
        return [_join_fragments(text, spans) for text, spans in zip(texts, results, strict=True)]

    def replacement(self, span: PiiSpan, mode: str) -> str:
        """What replaces a span: ``[TYPE]`` for mask, a consistent fake value for pseudonymize."""
        if mode == "mask":
            return f"[{span.type}]"
        check_mode(mode)
        return self.pseudonymizer.fake(span.type, span.value)

    def apply(self, text: str, spans: Sequence[PiiSpan], mode: str = "mask") -> str:
        """``text`` with each (non-overlapping, sorted) span replaced."""
        out, last = [], 0
        for span in spans:
            out += [text[last : span.start], self.replacement(span, mode)]
            last = span.end
        out.append(text[last:])
        return "".join(out)

    def redact(self, text: str, mode: str = "mask") -> str:
        return self.apply(text, self.detect(text), check_mode(mode))

    def redact_batch(self, texts: Sequence[str], mode: str = "mask") -> list[str]:
        check_mode(mode)
        return [self.apply(t, s, mode) for t, s in zip(texts, self.detect_batch(texts), strict=True)]


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidInputError(f"unknown redaction mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
    return mode
