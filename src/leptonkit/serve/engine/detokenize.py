"""Incremental detokenization with stop strings, one object per sequence.

Decoding the whole output every step costs O(n) per token; like vLLM, only a short window of ids is decoded
(``prefix_offset:read_offset`` vs ``prefix_offset:``), and text ending in U+FFFD (half a UTF-8 character) is held
back until the next token completes it. Text that could be the start of a stop string is held back too, so a
streamed response never shows a stop string it later has to take back.
"""

from __future__ import annotations

from typing import Any


class Detokenizer:
    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""  # all text decoded so far (stop strings excluded once found)
        self.sent = 0  # characters of ``text`` already handed out

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token_id: int) -> bool:
        """Append a token; True when a stop string was found (``text`` is then cut before it)."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) <= len(prefix) or full.endswith("\ufffd"):
            return False
        start = max(0, len(self.text) - self.hold)
        self.text += full[len(prefix) :]
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
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
