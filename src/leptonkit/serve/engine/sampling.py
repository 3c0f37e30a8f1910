"""Per-request sampling over one batch of logits: greedy rows in one ``argmax``, sampled rows each with their own
temperature, top-k, top-p and seeded generator (so a seeded request gives the same text whatever else is in the batch).

A row whose sampling raises (NaN logits, say) is reported in :attr:`Sampled.errors` instead of failing the batch;
the ``try`` around each sampled row costs nothing until it raises (zero-cost exceptions since Python 3.11).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from leptonkit.serve.engine.base import SamplingParams

SEED_RANGE = 2**64  # torch.Generator.manual_seed takes [-2**63, 2**64): every int seed is reduced into it


@dataclass
class Sampled:
    """The next token of each row; the rows in ``errors`` have none (their token is a placeholder)."""

    tokens: list[int]
    errors: dict[int, Exception] = field(default_factory=dict)


def make_generator(params: SamplingParams) -> torch.Generator | None:
    if params.greedy:
        return None
    generator = torch.Generator()
    if params.seed is not None:
        generator.manual_seed(params.seed % SEED_RANGE)
    else:
        # its own fresh seed; not ``torch.seed()``, which reseeds the process's global generator and queues a CUDA
        # reseed with a formatted stack trace (10% of a Ray replica's time on streamed chat, by py-spy)
        generator.seed()
    return generator


def sample(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]) -> Sampled:
    """Next token per row of ``logits`` ([batch, vocab], float32)."""
    tokens = logits.argmax(dim=-1)
    errors: dict[int, Exception] = {}
    for row, (p, generator) in enumerate(zip(params, generators, strict=True)):
        if p.greedy:
            continue
        try:
            tokens[row] = _sample_row(logits[row], p, generator)
        except Exception as err:  # reported per row; the caller ends that sequence
            errors[row] = err
    return Sampled(tokens.tolist(), errors)


def _sample_row(logits: torch.Tensor, p: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    if 0 < p.top_k < logits.shape[-1]:  # then top-p among those, as vLLM does
        kth = logits.topk(p.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits / p.temperature, dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(0) - sorted_probs < p.top_p
        keep[0] = True  # the most likely token, even when top_p underflows float32 (1e-300 compares as 0)
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_probs[keep])
    return torch.multinomial(probs.cpu(), 1, generator=generator)[0]  # seeded generators live on CPU


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, top: int) -> tuple[float, list[tuple[int, float]]]:
    """Log-probability of the chosen token under the model and the ``top`` most likely alternatives."""
    logprobs = torch.log_softmax(logits, dim=-1)
    chosen = float(logprobs[tokens])
    if top <= 0:
        return chosen, []
    values, ids = logprobs.topk(top)
    return chosen, list(zip(ids.tolist(), values.tolist(), strict=True))
