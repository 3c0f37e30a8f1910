"""Incremental detokenization with stop strings, one object per sequence.

Decoding the whole output every step costs O(n) per token. ``tokenizers``' ``DecodeStream`` decodes one token at a
time in Rust, keeping the few ids that context-sensitive decoders need and holding back half a UTF-8 character
until the next token completes it (about 2 us a token here, where decoding a window of ids through the Python
tokenizer twice a token, as vLLM does, took about 20 us). Text that could be the start of a stop string is held
back too, so a streamed response never shows a stop string it later has to take back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from tokenizers.decoders import DecodeStream

from leptonkit.errors import InvalidInputError
from leptonkit.serve.engine.base import TokenLogprob


class Detokenizer:
    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise InvalidInputError(
                f"the native engine streams text through a fast tokenizer; {type(tokenizer).__name__} is not one",
                hint="save the model with its tokenizer.json (a tokenizers-backed tokenizer), or use --engine vllm",
            )
        self.backend = backend
        self.stream = DecodeStream(skip_special_tokens=True)
        self.stop = [s for s in stop if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.text = ""  # all text decoded so far (stop strings excluded once found)
        self.sent = 0  # characters of ``text`` already handed out

    def add(self, token_id: int, stops: bool = True) -> bool:
        """Append a token; True when a stop string was found (``text`` is then cut before it). With ``stops``
        false (``min_tokens`` not yet reached) stop strings are not looked for in this token's text."""
        piece = self.stream.step(self.backend, token_id)
        if not piece:
            return False
        if not stops:
            self.text += piece
            return False
        start = max(0, len(self.text) - self.hold)
        self.text += piece
        for stop in self.stop:
            found = self.text.find(stop, start)
            if found >= 0:
                self.text = self.text[:found]
                return True
        return False

    def take(self, final: bool) -> str:
        """Text not yet handed out; unless ``final``, keep back what could begin a stop string."""
        end = len(self.text) if final or not self.stop else max(self.sent, len(self.text) - self.hold)
        delta, self.sent = self.text[self.sent : end], max(self.sent, end)
        return delta


_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@cache
def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet (``tokenizers``' ByteLevel), character to byte."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


class TokenBytes:
    """A token's raw bytes and a text for it, for ``logprobs``: a byte-level BPE token that is part of a UTF-8
    character is that part's bytes (not the replacement character's), and its text shows them escaped (``\\xe4``)
    rather than as U+FFFD; a byte-fallback token (``<0xE4>``) is its byte; any other token is its decoded text."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self.byte_level = decoder is not None and "ByteLevel" in json.loads(decoder.__getstate__()).get("type", "")
        self.special = set(getattr(tokenizer, "all_special_ids", []) or [])

    def __call__(self, token_id: int) -> tuple[str, bytes]:
        """(text, bytes) of ``token_id``."""
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        alphabet = _byte_alphabet()
        if self.byte_level and token_id not in self.special and piece and all(c in alphabet for c in piece):
            raw = bytes(alphabet[c] for c in piece)
        elif piece and (match := _BYTE_FALLBACK.fullmatch(piece)):
            raw = bytes([int(match.group(1), 16)])
        else:
            return self.tokenizer.decode([token_id]), self.tokenizer.decode([token_id]).encode()
        return raw.decode("utf-8", "backslashreplace"), raw

    def logprob(self, token_id: int, logprob: float, top: Iterable[tuple[int, float]] = ()) -> TokenLogprob:
        """``token_id``'s logprob entry, with ``top``'s (token id, logprob) alternatives."""
        text, raw = self(token_id)
        return TokenLogprob(text, logprob, [self.logprob(i, value) for i, value in top], raw)
