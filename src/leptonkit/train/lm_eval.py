"""Held-out evaluation of causal LMs: loss per token, perplexity, and bits per character.

Bits per character compares models with different tokenizers: the summed negative log-likelihood of the text (in
nats) divided by its character count and by ln 2. The stream starts with EOS, the separator pretraining puts before
every document, so the first token of the text is predicted and counted too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from leptonkit.errors import InvalidInputError

MAX_WINDOW = 2048  # tokens per window by default: a model's full context (SmolLM2: 8,192) costs quadratic memory


@torch.no_grad()
def evaluate_lm(
    model: Any, tokenizer: Any, documents: Sequence[str], *, block_size: int | None = None, batch_size: int = 8
) -> dict[str, Any]:
    """``{"n": predicted tokens, "characters", "metrics": {"loss", "perplexity", "bits_per_char", ...}}``.

    The token stream is cut into windows of ``block_size + 1`` tokens (the model's context, at most
    :data:`MAX_WINDOW`) that overlap by one, so every token after the leading EOS is predicted exactly once.
    """
    documents = [doc for doc in documents if doc.strip()]
    if not documents:
        raise InvalidInputError("the evaluation text is empty", hint="give a file that holds text", param="data")
    eos = tokenizer.eos_token_id
    stream = [eos]
    for ids in tokenizer(list(documents), add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(eos)
    block_size = block_size or min(getattr(model.config, "max_position_embeddings", 512), MAX_WINDOW)
    windows = [stream[start : start + block_size + 1] for start in range(0, len(stream) - 1, block_size)]
    was_training = model.training
    model.eval()
    total_nll = 0.0
    device = next(model.parameters()).device
    for start in range(0, len(windows), batch_size):
        total_nll += _batch_nll(model, windows[start : start + batch_size], device, tokenizer.pad_token_id or eos)
    model.train(was_training)
    tokens = len(stream) - 1
    characters = sum(len(doc) for doc in documents)
    loss = total_nll / tokens
    return {
        "n": tokens,
        "characters": characters,
        "metrics": {
            "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)),
            "bits_per_char": total_nll / characters / math.log(2),
            "nats_per_char": total_nll / characters,
        },
    }


def _batch_nll(model: Any, windows: list[list[int]], device: torch.device, pad_id: int) -> float:
    """Summed next-token NLL of a batch of windows; shorter windows are right-padded and their padding ignored."""
    width = max(len(w) for w in windows)
    ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(windows), width), dtype=torch.long)
    for row, window in enumerate(windows):
        ids[row, : len(window)] = torch.tensor(window)
        mask[row, : len(window)] = 1
    ids, mask = ids.to(device), mask.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
    ).item()


def evaluate_text_records(loaded: Any, records: list[dict]) -> dict[str, float]:
    """The ``lm`` evaluator of :mod:`leptonkit.train.evaluate`: text records (``{"text"}``) as documents."""
    result = evaluate_lm(loaded.model, loaded.tokenizer, [record["text"] for record in records])
    return result["metrics"] | {"tokens": result["n"], "characters": result["characters"]}
