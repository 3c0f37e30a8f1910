"""Incremental detokenization with stop strings, one object per sequence.

Decoding the whole output every step costs O(n) per token. ``tokenizers``' ``DecodeStream`` decodes one token at a
time in Rust, keeping the few ids that context-sensitive decoders need and holding back half a UTF-8 character
until the next token completes it (about 2 us a token here, where decoding a window of ids through the Python
tokenizer twice a token, as vLLM does, took about 20 us). Text that could be the start of a stop string is held
back too, so a streamed response never shows a stop string it later has to take back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tokenizers.decoders import DecodeStream

from leptonkit.errors import InvalidInputError
from leptonkit.serve.engine.base import TokenLogprob
from leptonkit.train.tokenizer import TokenPieces


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


class TokenBytes(TokenPieces):
    """:class:`~leptonkit.train.tokenizer.TokenPieces` that also make the engines' logprob entries."""

    def logprob(self, token_id: int, logprob: float, top: Iterable[tuple[int, float]] = ()) -> TokenLogprob:
        """``token_id``'s logprob entry, with ``top``'s (token id, logprob) alternatives."""
        text, raw = self(token_id)
        return TokenLogprob(text, logprob, [self.logprob(i, value) for i, value in top], raw)
