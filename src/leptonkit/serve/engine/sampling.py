"""Per-request sampling over one batch of logits: greedy rows in one ``argmax``, sampled rows each with their own
temperature, top-p and seeded generator (so a seeded request gives the same text whatever else is in the batch)."""

from __future__ import annotations

import torch

from leptonkit.serve.engine.base import SamplingParams


def make_generator(params: SamplingParams) -> torch.Generator | None:
    if params.greedy:
        return None
    generator = torch.Generator()
    generator.manual_seed(params.seed if params.seed is not None else torch.seed())
    return generator


def sample(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
) -> torch.Tensor:
    """Next token per row of ``logits`` ([batch, vocab], float32)."""
    tokens = logits.argmax(dim=-1)
    for row, (p, generator) in enumerate(zip(params, generators, strict=True)):
        if p.greedy:
            continue
        probs = torch.softmax(logits[row] / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            keep = sorted_probs.cumsum(0) - sorted_probs < p.top_p  # always keeps the most likely token
            probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_probs[keep])
        tokens[row] = torch.multinomial(probs.cpu(), 1, generator=generator)[0]  # seeded generators live on CPU
    return tokens


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, top: int) -> tuple[float, list[tuple[int, float]]]:
    """Log-probability of the chosen token under the model and the ``top`` most likely alternatives."""
    logprobs = torch.log_softmax(logits, dim=-1)
    chosen = float(logprobs[tokens])
    if top <= 0:
        return chosen, []
    values, ids = logprobs.topk(top)
    return chosen, list(zip(ids.tolist(), values.tolist(), strict=True))
