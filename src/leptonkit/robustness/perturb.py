"""Perturbed copies of evaluation records: typos, case, punctuation, synonyms and swapped personal data.

Every perturbation works on whitespace-separated words, so it applies alike to text records (classification
``{"text", "label"}``, ``{"text"}``, and the user/system turns of sft ``{"messages"}``) and to NER records
(``{"tokens", "tags"}``, one word per token, tags kept aligned). ``rate`` is the probability that each word is
perturbed; ``pii`` instead swaps *every* personal value it finds (PII detector spans in text, PER/LOC/ORG entities in
NER records) for a fake one of the same type, consistently within a run. Runs are deterministic for a seed.
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from leptonkit.errors import InvalidInputError

PERTURBATIONS = ("typos", "case", "punctuation", "synonyms", "pii")
DEFAULT_RATE = 0.1
PUNCTUATION = ".,;:!?-'\""
_WORD = re.compile(r"\S+")
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")

WordOp = Callable[[str, random.Random], str]


def parse_perturbations(spec: str) -> list[str]:
    """``"typos,case"`` -> ``["typos", "case"]``, in the given order, each known and named once."""
    kinds = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [kind for kind in kinds if kind not in PERTURBATIONS]
    if not kinds or unknown:
        raise InvalidInputError(
            f"unknown perturbation {', '.join(unknown) or repr(spec)}",
            hint=f"use a comma-separated list of: {','.join(PERTURBATIONS)}",
            param="perturb",
        )
    return list(dict.fromkeys(kinds))


def check_rate(rate: float) -> float:
    if not 0.0 < rate <= 1.0:
        raise InvalidInputError(f"rate must be in (0, 1], got {rate}", hint="e.g. --rate 0.1", param="rate")
    return rate


@cache
def _neighbours() -> dict[str, str]:
    """Letters next to each letter on a QWERTY keyboard: left/right, and the nearby keys of the rows around it."""
    out: dict[str, str] = {}
    for r, row in enumerate(_KEYBOARD_ROWS):
        for c, letter in enumerate(row):
            near = {row[i] for i in (c - 1, c + 1) if 0 <= i < len(row)}
            for other in _KEYBOARD_ROWS[max(r - 1, 0) : r + 2]:
                if other is not row:
                    near |= {other[i] for i in (c - 1, c, c + 1) if 0 <= i < len(other)}
            out[letter] = "".join(sorted(near))
    return out


def typo(word: str, rng: random.Random) -> str:
    """One keyboard slip in a word of 3+ letters: swap two letters, drop one, double one, or hit a neighbour key."""
    letters = [i for i, ch in enumerate(word) if ch.isalpha()]
    if len(letters) < 3:
        return word
    i = rng.choice(letters[:-1])
    operation = rng.choice(("swap", "drop", "double", "neighbour"))
    if operation == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if operation == "drop":
        return word[:i] + word[i + 1 :]
    if operation == "double":
        return word[:i] + word[i] + word[i:]
    key = rng.choice(_neighbours().get(word[i].lower(), word[i].lower()))
    return word[:i] + (key.upper() if word[i].isupper() else key) + word[i + 1 :]


def recase(word: str, rng: random.Random) -> str:
    """The word in another case: upper, lower or title, whichever differ from it."""
    options = [form for form in {word.upper(), word.lower(), word.title()} if form != word]
    return rng.choice(sorted(options)) if options else word


def punctuate(word: str, rng: random.Random) -> str:
    """Strip the punctuation of a word that has some (a lone mark disappears), else add a mark after it."""
    stripped = "".join(ch for ch in word if ch not in PUNCTUATION)
    if stripped != word:
        return stripped
    return word + rng.choice(PUNCTUATION[:6])


@cache
def synonym_table() -> dict[str, tuple[str, ...]]:
    """Word -> its synonyms, from the groups in ``leptonkit/resources/synonyms.txt``."""
    table: dict[str, set[str]] = {}
    text = resources.files("leptonkit").joinpath("resources/synonyms.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        group = [w.strip() for w in line.split(",") if w.strip()]
        for word in group:
            table.setdefault(word, set()).update(w for w in group if w != word)
    return {word: tuple(sorted(others)) for word, others in table.items()}


def synonym(word: str, rng: random.Random) -> str:
    """A synonym from the shipped word list, in the word's case; words outside the list stay."""
    core = word.strip(PUNCTUATION)
    choices = synonym_table().get(core.lower())
    if not core or not choices:
        return word
    swap = rng.choice(choices)
    if core.isupper() and len(core) > 1:
        swap = swap.upper()
    elif core[0].isupper():
        swap = swap[0].upper() + swap[1:]
    start = word.index(core)
    return word[:start] + swap + word[start + len(core) :]


WORD_OPS: dict[str, WordOp] = {"typos": typo, "case": recase, "punctuation": punctuate, "synonyms": synonym}


class PiiSwapper:
    """Personal data swapped for other fake personal data of the same type, with the privacy package's detector.

    Text: every span the :class:`~leptonkit.privacy.pii.PiiDetector` finds (patterns, names and places from its word
    lists and rules, organisations too when a model aliased ``@pii`` exists). NER records: their own PER/LOC/ORG
    entities.
    """

    def __init__(self, seed: int = 0) -> None:
        from leptonkit.registry.pii import pii_detector

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.detector = pii_detector(key=f"leptonkit-perturb-{seed}")

    def texts(self, texts: list[str]) -> list[str]:
        return self.detector.redact_batch(texts, mode="pseudonymize")

    def tokens(self, tokens: list[str], tags: list[str]) -> tuple[list[str], list[str]]:
        from leptonkit.privacy.pii import MODEL_TYPES

        out_tokens: list[str] = []
        out_tags: list[str] = []
        for kind, words, span_tags in _entity_runs(tokens, tags):
            pii_type = MODEL_TYPES.get(kind.upper()) if kind else None
            if pii_type is None:
                out_tokens += words
                out_tags += span_tags
                continue
            fake = self.detector.pseudonymizer.fake(pii_type, " ".join(words)).split() or words
            out_tokens += fake
            out_tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(fake) - 1)
        return out_tokens, out_tags


def _entity_runs(tokens: list[str], tags: list[str]) -> list[tuple[str | None, list[str], list[str]]]:
    """IOB2 tokens grouped into ``(type, words, tags)`` runs; outside words are single runs of type ``None``."""
    runs: list[tuple[str | None, list[str], list[str]]] = []
    for token, tag in zip(tokens, tags, strict=True):
        prefix, _, kind = tag.partition("-")
        if prefix == "I" and runs and runs[-1][0] == kind:
            runs[-1][1].append(token)
            runs[-1][2].append(tag)
        else:
            runs.append((kind if prefix in ("B", "I") else None, [token], [tag]))
    return runs


def _perturb_words(text: str, op: WordOp, rate: float, rng: random.Random) -> str:
    def replace(match: re.Match[str]) -> str:
        return op(match.group(), rng) if rng.random() < rate else match.group()

    return re.sub(r" {2,}", " ", _WORD.sub(replace, text)).strip() or text


def _perturb_tokens(
    tokens: list[str], tags: list[str], op: WordOp, rate: float, rng: random.Random
) -> tuple[list[str], list[str]]:
    """Perturb tokens in place of themselves; a token emptied by the perturbation is dropped only outside entities."""
    out_tokens, out_tags = [], []
    for token, tag in zip(tokens, tags, strict=True):
        new = op(token, rng) if rng.random() < rate else token
        if not new and tag != "O":
            new = token
        if new:
            out_tokens.append(new)
            out_tags.append(tag)
    return (out_tokens, out_tags) if out_tokens else (tokens, tags)


def perturb_records(records: list[dict], kind: str, *, rate: float = DEFAULT_RATE, seed: int = 0) -> list[dict]:
    """A perturbed copy of ``records`` (the data contract's record shapes); the input is left untouched."""
    parse_perturbations(kind)
    check_rate(rate)
    rng = random.Random(f"{kind}:{seed}")
    if kind == "pii":
        return _swap_pii(records, PiiSwapper(seed))
    op = WORD_OPS[kind]
    out = []
    for number, record in enumerate(records, 1):
        new: dict[str, Any] = dict(record)
        if "tokens" in record:
            new["tokens"], new["tags"] = _perturb_tokens(record["tokens"], record["tags"], op, rate, rng)
        elif "messages" in record:
            new["messages"] = [
                m | {"content": _perturb_words(m["content"], op, rate, rng)} if m["role"] != "assistant" else dict(m)
                for m in record["messages"]
            ]
        elif "text" in record:
            new["text"] = _perturb_words(record["text"], op, rate, rng)
        else:
            raise _unknown_record(number)
        out.append(new)
    return out


def _swap_pii(records: list[dict], swapper: PiiSwapper) -> list[dict]:
    out = [dict(record) for record in records]
    texts: list[tuple[dict, str, int | None]] = []  # (record, key, message index)
    for number, record in enumerate(out, 1):
        if "tokens" in record:
            record["tokens"], record["tags"] = swapper.tokens(record["tokens"], record["tags"])
        elif "messages" in record:
            record["messages"] = [dict(m) for m in record["messages"]]
            texts += [(record, "content", i) for i, m in enumerate(record["messages"]) if m["role"] != "assistant"]
        elif "text" in record:
            texts.append((record, "text", None))
        else:
            raise _unknown_record(number)
    originals = [r[key] if i is None else r["messages"][i][key] for r, key, i in texts]
    for (record, key, i), swapped in zip(texts, swapper.texts(originals), strict=True):
        (record if i is None else record["messages"][i])[key] = swapped
    return out


def _unknown_record(number: int) -> InvalidInputError:
    return InvalidInputError(
        f"record {number} has none of text, tokens/tags or messages",
        hint="perturb records of the data contract: prepare them with `leptonkit data prepare`",
    )
