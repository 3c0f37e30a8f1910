"""Llama-style causal LM sizes that leptonkit pretrains from scratch (counts below at the default 8,192 vocabulary).

| preset | layers | hidden | heads | MLP  | context | parameters |
|--------|--------|--------|-------|------|---------|------------|
| tiny   | 6      | 384    | 6     | 1024 | 256     | ~17M       |
| small  | 10     | 640    | 10    | 1728 | 512     | ~60M       |
| base   | 15     | 768    | 12    | 2048 | 1024    | ~119M      |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from leptonkit.errors import InvalidInputError


@dataclass(frozen=True)
class Preset:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int


PRESETS: dict[str, Preset] = {
    "tiny": Preset(384, 6, 6, 1024, 256),
    "small": Preset(640, 10, 10, 1728, 512),
    "base": Preset(768, 15, 12, 2048, 1024),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InvalidInputError(f"unknown preset {name!r}", hint=f"use one of: {', '.join(PRESETS)}", param="preset")
    return PRESETS[name]


def llama_config(preset: str, *, vocab_size: int, tokenizer: Any = None, **overrides: Any) -> Any:
    """A ``LlamaConfig`` for ``preset``; with ``tokenizer``, sized to its vocabulary and carrying its special tokens.

    ``overrides`` replace preset fields (e.g. ``num_hidden_layers=2, hidden_size=64`` for tests).
    """
    from transformers import LlamaConfig

    fields = asdict(get_preset(preset)) | overrides
    special = {}
    if tokenizer is not None:
        vocab_size = len(tokenizer)
        special = {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
    fields.setdefault("num_key_value_heads", fields["num_attention_heads"])
    return LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=False, **special, **fields)


def parameter_count(config: Any) -> int:
    """Parameters of the model ``config`` describes, counted on the meta device (no memory allocated)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def describe_presets(vocab_size: int = 8192) -> list[dict[str, Any]]:
    """Each preset's shape and parameter count at ``vocab_size``, for ``leptonkit pretrain --list-presets``."""
    return [
        {
            "preset": name,
            **asdict(preset),
            "vocab_size": vocab_size,
            "parameters": parameter_count(llama_config(name, vocab_size=vocab_size)),
        }
        for name, preset in PRESETS.items()
    ]
