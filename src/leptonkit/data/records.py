"""Rows as read, to records of the data contract, per task.

classification ``{"text", "label"}``; ner ``{"tokens", "tags"}``; sft ``{"messages": [{"role", "content"}]}``;
text ``{"text"}``. Column names are taken from ``--text-col``/``--label-col`` or the usual names of each shape
(Alpaca's instruction/input/output becomes a user and an assistant message).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from leptonkit.data.sources import RowError
from leptonkit.privacy.recognizers import cjk_as_separators

TASKS = ("classification", "ner", "sft", "text")
ROLES = ("system", "user", "assistant")
TEXT_COLUMNS = ("text", "sentence", "content", "review", "document")
LABEL_COLUMNS = ("label", "labels", "class", "category")


@dataclass(frozen=True)
class Columns:
    text: str | None = None
    label: str | None = None


class ColumnError(RowError):
    """A row lacks the text or label column: on a file's first row this means a wrong or missing --*-col."""


def _pick(row: dict, given: str | None, candidates: Iterable[str], what: str, line: int) -> str:
    if given is not None:
        if given not in row:
            raise ColumnError(line, f"no column {given!r} for --{what}-col (columns: {', '.join(map(str, row))})")
        return given
    for name in candidates:
        if name in row:
            return name
    raise ColumnError(line, f"no {what} column (columns: {', '.join(map(str, row))}); name it with --{what}-col")


def _string(value: Any, line: int, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowError(line, f"{what} must be a string, got {type(value).__name__}")
    return str(value)


def to_record(row: Any, task: str, columns: Columns, line: int) -> dict:
    """The contract record for one row; a row of the wrong shape is a :class:`RowError`."""
    if isinstance(row, RowError):
        raise row
    if task == "ner":
        return _ner(row, columns, line)
    if isinstance(row, str):
        if task != "text":
            raise RowError(line, f"plain text has no labels or roles; a {task} dataset needs jsonl, json, csv or tsv")
        return {"text": row}
    if isinstance(row, tuple):
        raise RowError(line, f"CoNLL input makes an ner dataset, not {task}")
    if task == "classification":
        text = _string(row[_pick(row, columns.text, TEXT_COLUMNS, "text", line)], line, "text")
        label = _string(row[_pick(row, columns.label, LABEL_COLUMNS, "label", line)], line, "label")
        return {"text": text, "label": label}
    if task == "sft":
        return {"messages": _messages(row, line)}
    return {"text": _string(row[_pick(row, columns.text, TEXT_COLUMNS, "text", line)], line, "text")}


def _ner(row: Any, columns: Columns, line: int) -> dict:
    if isinstance(row, tuple):
        tokens, tags = row
    elif isinstance(row, dict):
        tokens = row[_pick(row, columns.text, ("tokens", "words"), "text", line)]
        tags = row[_pick(row, columns.label, ("tags", "ner_tags", "labels"), "label", line)]
    else:
        raise RowError(line, "an ner record needs tokens and tags (CoNLL, or jsonl with tokens/tags)")
    if not isinstance(tokens, list) or not isinstance(tags, list):
        raise RowError(line, "tokens and tags must be lists")
    if len(tokens) != len(tags):
        raise RowError(line, f"{len(tokens)} tokens but {len(tags)} tags")
    return {"tokens": [_string(t, line, "token") for t in tokens], "tags": [_string(t, line, "tag") for t in tags]}


def _messages(row: dict, line: int) -> list[dict]:
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise RowError(line, "messages must be a non-empty list")
        out = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise RowError(line, f"message {i} needs a role in {ROLES} and a content")
            out.append({"role": message["role"], "content": _string(message.get("content"), line, "content")})
        return out
    for prompt_key, answer_key in (
        ("instruction", "output"),
        ("prompt", "response"),
        ("prompt", "completion"),
        ("question", "answer"),
    ):
        if prompt_key in row and answer_key in row:
            prompt = _string(row[prompt_key], line, prompt_key)
            context = row.get("input") if prompt_key == "instruction" else None
            if context:
                prompt = f"{prompt}\n\n{_string(context, line, 'input')}"
            messages = [{"role": "user", "content": prompt}]
            if row.get("system"):
                messages.insert(0, {"role": "system", "content": _string(row["system"], line, "system")})
            return [*messages, {"role": "assistant", "content": _string(row[answer_key], line, answer_key)}]
    raise RowError(
        line,
        f"an sft record needs messages, instruction/output, prompt/response or question/answer "
        f"(columns: {', '.join(map(str, row))})",
    )


def character_level(tokens: Sequence[str]) -> bool:
    """Whether NER tokens are single characters of CJK text (as in Chinese CoNLL files: 我 叫 王 秀 英 1 3 8 ...)."""
    return all(len(t) == 1 for t in tokens) and any(cjk_as_separators(t) for t in tokens)


def join_tokens(tokens: Sequence[str]) -> tuple[str, list[int]]:
    """The text of NER tokens and each token's start in it: one space between tokens, none between two CJK
    tokens, none at all in character-level CJK text (Chinese reads as Chinese text, which the Chinese name rules
    and the phone and ID patterns need)."""
    joined = character_level(tokens)
    text, starts = "", []
    for i, token in enumerate(tokens):
        if i and not joined and not (cjk_as_separators(tokens[i - 1][-1:]) and cjk_as_separators(token[:1])):
            text += " "
        starts.append(len(text))
        text += token
    return text, starts


def record_texts(record: dict) -> list[str]:
    """The free-text fields of a record, in order (what PII detection and de-duplication look at)."""
    if "messages" in record:
        return [m["content"] for m in record["messages"]]
    if "tokens" in record:
        return [join_tokens(record["tokens"])[0]]
    return [record["text"]]
