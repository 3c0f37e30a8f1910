"""Cleaning: Unicode NFC, full-width forms to their plain ones, control characters out, whitespace normalised,
empty/over-long records dropped, labels validated, NER tags repaired to IOB2; optionally Traditional Chinese to
Simplified.

Each function returns the cleaned record or the reason it is dropped; nothing is dropped silently.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from leptonkit.errors import InvalidInputError

# C0/C1 controls except tab and newline (kept where layout matters: text and sft), plus zero-width/bidi marks.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_ALL_SPACE = re.compile(r"\s+")
_TAG = re.compile(r"^(?:O|[BIES]-.+)$")
# Full-width punctuation that Chinese (and Japanese) text writes as such: kept, since NFKC would make "好，但是"
# into "好,但是" and "真的？！" into "真的?!", which is not how the language is written and not how a model will
# meet it at inference. (。、「」《》【】… are not touched by the mapping below at all.)
KEPT_FULL_WIDTH = "，！？：；（）～"


def _width_table() -> dict[int, str]:
    """NFKC limited to the full-width and half-width forms (U+FF00-U+FFEF) and the ideographic space (U+3000):
    ＡＢＣ１２３ to ABC123, "　" to " ", half-width katakana to katakana. Full NFKC would also rewrite text that
    is fine as it is (x² to x2, ½ to 1⁄2, ™ to TM, … to ...), in English as much as in Chinese."""
    table = {}
    for code in [0x3000, *range(0xFF00, 0xFFF0)]:
        char = chr(code)
        plain = unicodedata.normalize("NFKC", char)
        if plain != char and char not in KEPT_FULL_WIDTH:
            table[code] = plain
    return table


_WIDTH = _width_table()


@dataclass
class Cleaned:
    record: dict | None
    reason: str | None = None
    repaired: int = 0  # tags changed by IOB2 repair


def normalize(text: str, *, keep_lines: bool) -> str:
    """NFC, full-width ASCII as ASCII (Chinese punctuation kept: ``KEPT_FULL_WIDTH``), no control characters, runs
    of spaces as one; with ``keep_lines``, line breaks stay (at most one blank)."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n").translate(_WIDTH))
    text = _CONTROL.sub("", text)
    if not keep_lines:
        return _ALL_SPACE.sub(" ", text).strip()
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def repair_iob2(tags: list[str]) -> tuple[list[str], int] | None:
    """IOB1/IOBES tags to IOB2 (an ``I-X`` that starts an entity becomes ``B-X``); ``None`` for a non-IOB tag."""
    out, changed, previous = [], 0, "O"
    for tag in tags:
        if not _TAG.match(tag):
            return None
        prefix, kind = (tag[0], tag[2:]) if tag != "O" else ("O", "")
        if prefix in "ES":  # IOBES: S-X is a one-token entity, E-X its last token
            prefix = "B" if prefix == "S" else "I"
        if prefix == "I" and previous[2:] != kind:
            prefix = "B"
        new = "O" if prefix == "O" else f"{prefix}-{kind}"
        changed += new != tag
        out.append(new)
        previous = new
    return out, changed


def t2s_converter() -> Callable[[str], str]:
    """Traditional Chinese to Simplified (OpenCC's ``t2s``: characters and phrases, e.g. 繁體 to 繁体, 乾燥 to 干燥)."""
    try:
        import opencc
    except ImportError:
        raise InvalidInputError(
            "--t2s needs the opencc package", hint="pip install 'leptonkit[train]' (or: pip install opencc)"
        ) from None
    return opencc.OpenCC("t2s").convert


def _same(text: str) -> str:
    return text


def clean_record(record: dict, task: str, max_chars: int, convert: Callable[[str], str] | None = None) -> Cleaned:
    """``convert`` (e.g. ``t2s_converter()``) rewrites the text after normalisation: text, message contents and
    NER tokens (one by one, so tags stay aligned); never labels, which name classes the user chose."""
    convert = convert or _same
    if task == "ner":
        record = {**record, "tokens": [convert(tok) for tok in record["tokens"]]}
        return _clean_ner(record, max_chars)
    if task == "sft":
        messages = [{**m, "content": convert(normalize(m["content"], keep_lines=True))} for m in record["messages"]]
        if not any(m["content"] for m in messages if m["role"] == "assistant"):
            return Cleaned(None, "no_assistant_reply")
        if not any(m["content"] for m in messages if m["role"] == "user"):
            return Cleaned(None, "empty")
        if sum(len(m["content"]) for m in messages) > max_chars:
            return Cleaned(None, "too_long")
        return Cleaned({"messages": [m for m in messages if m["content"]]})
    text = convert(normalize(record["text"], keep_lines=task == "text"))
    if not text:
        return Cleaned(None, "empty")
    if len(text) > max_chars:
        return Cleaned(None, "too_long")
    if task == "classification":
        label = normalize(record["label"], keep_lines=False)
        if not label:
            return Cleaned(None, "empty_label")
        return Cleaned({"text": text, "label": label})
    return Cleaned({"text": text})


def _clean_ner(record: dict, max_chars: int) -> Cleaned:
    pairs = [
        (normalize(tok, keep_lines=False), tag.strip())
        for tok, tag in zip(record["tokens"], record["tags"], strict=True)
    ]
    pairs = [(tok, tag) for tok, tag in pairs if tok]
    if not pairs:
        return Cleaned(None, "empty")
    tokens = [tok for tok, _ in pairs]
    if sum(map(len, tokens)) + len(tokens) - 1 > max_chars:
        return Cleaned(None, "too_long")
    repaired = repair_iob2([tag for _, tag in pairs])
    if repaired is None:
        return Cleaned(None, "invalid_tags")
    tags, changed = repaired
    return Cleaned({"tokens": tokens, "tags": tags}, repaired=changed)
