"""Sub-word scores back to the words a person reads, with character offsets into the original text.

A word is a run of non-space characters, whatever the tokenizer: ``"isn't"`` stays one word although WordPiece cuts
it into three pieces. A sub-word belongs to the word holding its first non-space character (byte-level BPE offsets
may include the leading space), and a word's score is the sum of its pieces' scores, so IG's completeness carries
over from sub-words to words.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import asdict, dataclass

_WORD = re.compile(r"\S+")


@dataclass
class WordAttribution:
    word: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of ``text``."""
    return [match.span() for match in _WORD.finditer(text)]


def token_words(text: str, offsets: list[tuple[int, int]], special: list[bool]) -> list[int | None]:
    """For each sub-word, the index of the word (in :func:`word_spans` order) it belongs to; ``None`` for specials."""
    spans = word_spans(text)
    starts = [start for start, _ in spans]
    owners: list[int | None] = []
    for (start, end), is_special in zip(offsets, special, strict=True):
        first = next((i for i in range(start, end) if not text[i].isspace()), None)
        if is_special or first is None:
            owners.append(None)
            continue
        index = bisect.bisect_right(starts, first) - 1
        owners.append(index if index >= 0 and first < spans[index][1] else None)
    return owners


def aggregate(
    text: str, scores: list[float], offsets: list[tuple[int, int]], special: list[bool]
) -> tuple[list[WordAttribution], bool]:
    """Word attributions in reading order, and whether some words had no sub-word (cut off by truncation)."""
    spans = word_spans(text)
    totals: dict[int, float] = {}
    for owner, score in zip(token_words(text, offsets, special), scores, strict=True):
        if owner is not None:
            totals[owner] = totals.get(owner, 0.0) + score
    words = [WordAttribution(text[spans[i][0] : spans[i][1]], *spans[i], totals[i]) for i in sorted(totals)]
    return words, len(totals) < len(spans)
