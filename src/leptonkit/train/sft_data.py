"""Instruction-tuning records: Alpaca, chat ``messages`` and prompt/completion pairs, all made into chat messages,
formatted by the model's chat template, with labels on the assistant's tokens only (prompt tokens carry -100)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leptonkit.errors import InvalidInputError
from leptonkit.train.packing import IGNORE_INDEX
from leptonkit.train.tokenizer import CHAT_ROLES

Messages = list[dict[str, str]]
GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")  # as transformers finds it


def to_messages(record: Any, where: str) -> Messages:
    """One record in any supported shape as chat messages; ``where`` (``file:line``) goes into errors."""
    if not isinstance(record, dict):
        raise InvalidInputError(f"{where}: an SFT record must be a JSON object, got {type(record).__name__}")
    if "messages" in record:
        return _checked_messages(record["messages"], where)
    if "instruction" in record:
        output = _required_text(record, "output", where, "an Alpaca record needs instruction and output")
        prompt = str(record["instruction"]).strip()
        context = str(record.get("input") or "").strip()
        if context:
            prompt = f"{prompt}\n\n{context}"
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    if "prompt" in record:
        completion = _required_text(record, "completion", where, "a prompt record needs prompt and completion")
        return [{"role": "user", "content": str(record["prompt"])}, {"role": "assistant", "content": completion}]
    raise InvalidInputError(
        f"{where}: unknown SFT record shape with keys {sorted(record)}",
        hint="give messages, instruction/input/output (Alpaca), or prompt/completion",
    )


def _required_text(record: dict, key: str, where: str, hint: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{where}: record has no {key!r}", hint=hint, param=key)
    return value


def _checked_messages(messages: Any, where: str) -> Messages:
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError(f"{where}: 'messages' must be a non-empty list")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise InvalidInputError(f"{where}: message {i} needs a string 'content'")
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise InvalidInputError(
                f"{where}: message {i} has unknown role {role!r}", hint=f"use one of: {', '.join(CHAT_ROLES)}"
            )
        out.append({"role": role, "content": message["content"]})
    if not any(m["role"] == "assistant" for m in out):
        raise InvalidInputError(f"{where}: no assistant message to learn from", hint="add an assistant reply")
    return out


def read_records(path: str | Path) -> Iterator[tuple[Any, str]]:
    """``(record, "file:line")`` from a JSON array file or a JSON Lines file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"SFT data {path} not found", hint="give a .json or .jsonl file", param="data")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidInputError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
        for i, record in enumerate(records):
            yield record, f"{path}[{i}]"
        return
    # JSON lines end at "\n" alone: splitlines would also cut at U+0085 or U+2028, which a JSON string may hold
    for lineno, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                yield json.loads(line), f"{path}:{lineno}"
            except json.JSONDecodeError as err:
                raise InvalidInputError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None


def load_conversations(path: str | Path) -> list[Messages]:
    conversations = [to_messages(record, where) for record, where in read_records(path)]
    if not conversations:
        raise InvalidInputError(f"SFT data {path} holds no records", param="data")
    return conversations


@dataclass
class EncodedConversations:
    """Token ids and labels per conversation; ``truncated`` counts conversations cut to ``max_length``."""

    examples: list[tuple[list[int], list[int]]] = field(default_factory=list)
    truncated: int = 0
    without_response: int = 0


def encode_conversation(tokenizer: Any, messages: Messages) -> tuple[list[int], list[int]]:
    """Token ids of the chat-formatted conversation and labels that keep only the assistant's tokens.

    A template with ``{% generation %}`` markers says which tokens are the assistant's; most Hub templates have none,
    and then :func:`assistant_spans` finds each reply by rendering the conversation with and without it.
    """
    if not GENERATION_BLOCK.search(tokenizer.chat_template or ""):
        return encode_by_rendering(tokenizer, messages)
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(encoded["input_ids"])
    mask = encoded["assistant_masks"]
    if not any(mask):
        return encode_by_rendering(tokenizer, messages)
    return ids, [token if keep else IGNORE_INDEX for token, keep in zip(ids, mask, strict=True)]


def assistant_spans(tokenizer: Any, messages: Messages) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant reply in it.

    Reply ``i`` starts where the rendering of ``messages[:i]`` with a generation prompt ends and stops where the
    rendering of ``messages[:i + 1]`` ends, less trailing whitespace: the reply's text and the template's end-of-turn
    marker, which the model must learn to emit.
    """
    render = tokenizer.apply_chat_template
    text = render(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(messages[:i], tokenize=False, add_generation_prompt=True)
        with_reply = render(messages[: i + 1], tokenize=False).rstrip()
        if not (with_reply.startswith(prompt) and text.startswith(with_reply)):
            raise InvalidInputError(
                "the chat template renders earlier turns differently once a reply follows, so the assistant's "
                "tokens cannot be found",
                hint="add {% generation %} markers around assistant replies to the tokenizer's chat template",
            )
        spans.append((len(prompt), len(with_reply)))
    return text, spans


def encode_by_rendering(tokenizer: Any, messages: Messages) -> tuple[list[int], list[int]]:
    """:func:`encode_conversation` for a template without generation markers: a token is labelled when it starts
    inside an assistant span (:func:`assistant_spans`), by the tokenizer's character offsets."""
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidInputError(
            "a chat template without {% generation %} markers needs a fast tokenizer (character offsets)",
            hint="load the tokenizer with use_fast=True, or add generation markers to its chat template",
        )
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE_INDEX
        for token, (begin, _) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    return ids, labels


def encode_conversations(tokenizer: Any, conversations: list[Messages], max_length: int) -> EncodedConversations:
    """Encode every conversation, cutting each to ``max_length`` tokens; cut and response-less ones are counted."""
    out = EncodedConversations()
    for messages in conversations:
        ids, labels = encode_conversation(tokenizer, messages)
        if len(ids) > max_length:
            out.truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        if all(label == IGNORE_INDEX for label in labels[1:]):
            out.without_response += 1
            continue
        out.examples.append((ids, labels))
    return out
