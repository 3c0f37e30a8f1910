"""Byte-level BPE tokenizers trained on a corpus with ``tokenizers``, saved with special tokens and a chat template.

The result is a plain ``PreTrainedTokenizerFast``: ``AutoTokenizer.from_pretrained`` loads it without leptonkit,
and ``apply_chat_template`` formats conversations with it. The template marks assistant turns with
``{% generation %}`` so that ``return_assistant_tokens_mask=True`` finds the response tokens for SFT label masking.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from leptonkit.errors import InvalidInputError

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
PAD = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IM_START, IM_END]
CHAT_ROLES = ("system", "user", "assistant")

# ChatML layout. The assistant's content and its closing tag sit inside {% generation %} so that the model learns
# to end its turn; ``add_generation_prompt`` opens an assistant turn for sampling.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

MIN_VOCAB = len(SPECIAL_TOKENS) + 256


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 8192, min_frequency: int = 2) -> Any:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    Every byte is in the initial alphabet, so any text (any language, emoji, binary junk) encodes without unknowns.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < MIN_VOCAB:
        raise InvalidInputError(
            f"vocabulary size {vocab_size} is too small",
            hint=f"use at least {MIN_VOCAB} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)",
            param="vocab_size",
        )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_non_empty(texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=1 << 30,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def ensure_chat_template(tokenizer: Any) -> Any:
    """Give a tokenizer without a chat template leptonkit's ChatML template; its markers must be single tokens.

    A tokenizer that already has a template keeps it: the model was trained with that layout.
    """
    if tokenizer.chat_template:
        return tokenizer
    missing = [tok for tok in (IM_START, IM_END) if tok not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def ensure_pad_token(tokenizer: Any) -> Any:
    """Causal-LM tokenizers often lack a pad token; batching needs one (EOS is the usual stand-in)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _non_empty(texts: Iterable[str]) -> Iterator[str]:
    seen = False
    for text in texts:
        if text.strip():
            seen = True
            yield text
    if not seen:
        raise InvalidInputError("the corpus holds no text", hint="give files that hold text", param="data")


_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@cache
def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet (``tokenizers``' ByteLevel), character to byte."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


class TokenPieces:
    """A token's raw bytes and a text for it, for per-token views (the server's ``logprobs``, ``generate
    --explain``): a byte-level BPE token that is part of a UTF-8 character is that part's bytes (not the replacement
    character's), and its text shows them escaped (``\\xe4``) rather than as U+FFFD; a byte-fallback token
    (``<0xE4>``) is its byte; any other token is its decoded text."""

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
            text = self.tokenizer.decode([token_id])
            return text, text.encode()
        return raw.decode("utf-8", "backslashreplace"), raw
