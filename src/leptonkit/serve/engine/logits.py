"""Per-request logits processing inside the continuous batch: logit bias, ``min_tokens`` and the repetition,
frequency and presence penalties, applied to the rows that ask for them before sampling (``sampling.sample``).

A sequence whose :class:`~leptonkit.serve.engine.base.SamplingParams` control its logits gets a :class:`RowLogits`
(:func:`row_logits`; ``None`` otherwise): its parameters, the tokens of its prompt and counts of the tokens it
generated. Each engine step :func:`apply` changes the batch's logits in place, one vectorised operation per kind of
control over all the rows that use it; rows without controls are not touched, so their greedy output is what it
would be alone. After sampling, :meth:`RowLogits.record` counts the chosen token.

The order is vLLM's (``vllm/v1/sample/sampler.py``): logit bias and the ``min_tokens`` mask first, then the
penalties, on the model's raw logits; temperature, top-k and top-p come after, in sampling. Logprobs report the raw
logits (vLLM's default ``raw_logprobs``): the engine keeps a copy of a controlled row that asks for logprobs.

Where a grammar mask plugs in (structured outputs): a row constrained by a grammar carries its matcher on its
:class:`RowLogits` (so ``SamplingParams.controls_logits`` is true for it), and :func:`apply` masks those rows last,
after the penalties: each matcher fills its row of one token bitmask (``xgrammar.allocate_token_bitmask`` for the
batch, ``matcher.fill_next_token_bitmask(bitmask, i)``) and one ``xgrammar.apply_token_bitmask_inplace(logits,
bitmask, indices=rows)`` sets the disallowed tokens to -inf; :meth:`RowLogits.record` then advances the matcher with
the sampled token (``matcher.accept_token``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from leptonkit.serve.engine import grammar
from leptonkit.serve.engine.base import SamplingParams


class RowLogits:
    """The logits state of one sequence with controls."""

    def __init__(
        self, params: SamplingParams, prompt_ids: list[int], end_ids: Iterable[int], matcher: Any = None
    ) -> None:
        self.params = params
        self.matcher = matcher  # the grammar of a structured output (``engine.grammar``), or None
        self.prompt_ids = prompt_ids
        # what min_tokens holds back: the end of sequence and the request's stop tokens
        self.end_ids = sorted({*end_ids, *params.stop_token_ids})
        self.generated = 0
        self.counts: torch.Tensor | None = None  # [vocab] occurrences of each generated token, made at first use
        self.in_prompt: torch.Tensor | None = None  # [vocab] bool, for the repetition penalty

    @property
    def penalised(self) -> bool:
        p = self.params
        return bool(p.presence_penalty or p.frequency_penalty or p.repetition_penalty != 1.0)

    def _history(self, vocab: int, device: torch.device) -> None:
        if self.counts is None:
            self.counts = torch.zeros(vocab, device=device)
            prompt = torch.tensor([t for t in self.prompt_ids if 0 <= t < vocab], dtype=torch.long, device=device)
            self.in_prompt = torch.zeros(vocab, dtype=torch.bool, device=device).index_fill_(0, prompt, True)

    def record(self, token: int) -> None:
        """Count ``token``, this sequence's next one (and advance the grammar with it)."""
        if self.matcher is not None and not self.matcher.is_terminated() and not self.matcher.accept_token(token):
            raise ValueError(f"token {token} does not continue the output's grammar")
        self.generated += 1
        if self.counts is not None and 0 <= token < self.counts.shape[0]:
            self.counts[token] += 1

    @property
    def grammar_done(self) -> bool:
        """The output's grammar is complete and took its end: the sequence ends here."""
        return self.matcher is not None and self.matcher.is_terminated()


def row_logits(
    params: SamplingParams, prompt_ids: list[int], end_ids: Iterable[int], matcher: Any = None
) -> RowLogits | None:
    """The logits state of a new sequence, or None when its request sets no control."""
    return RowLogits(params, prompt_ids, end_ids, matcher) if params.controls_logits else None


def apply(logits: torch.Tensor, rows: Sequence[RowLogits | None]) -> None:
    """Apply each row's controls to ``logits`` ([batch, vocab] float32) in place; ``None`` rows stay as they are."""
    active = [(i, r) for i, r in enumerate(rows) if r is not None]
    if not active:
        return
    vocab, device = logits.shape[-1], logits.device
    _add_bias(logits, active)
    _hold_back_end(logits, active)
    penalised = [(i, r) for i, r in active if r.penalised]
    if penalised:
        _penalise(logits, penalised, vocab, device)
    constrained = [(i, r.matcher) for i, r in active if r.matcher is not None]
    if constrained:  # last: whatever the other controls did, only the grammar's tokens stay possible
        grammar.mask(logits, constrained)


def _add_bias(logits: torch.Tensor, active: list[tuple[int, RowLogits]]) -> None:
    entries = [(i, token, bias) for i, r in active for token, bias in r.params.logit_bias.items()]
    if not entries:
        return
    rows, tokens, values = zip(*entries, strict=True)
    index = (torch.tensor(rows, device=logits.device), torch.tensor(tokens, device=logits.device))
    logits.index_put_(index, torch.tensor(values, dtype=logits.dtype, device=logits.device), accumulate=True)


def _hold_back_end(logits: torch.Tensor, active: list[tuple[int, RowLogits]]) -> None:
    """``min_tokens``: no end of sequence (nor a stop token) before the row has generated that many tokens."""
    entries = [(i, token) for i, r in active if r.generated < r.params.min_tokens for token in r.end_ids]
    if not entries:
        return
    rows, tokens = zip(*entries, strict=True)
    logits[torch.tensor(rows, device=logits.device), torch.tensor(tokens, device=logits.device)] = float("-inf")


def _penalise(logits: torch.Tensor, rows: list[tuple[int, RowLogits]], vocab: int, device: torch.device) -> None:
    for _, r in rows:
        r._history(vocab, device)
    index = torch.tensor([i for i, _ in rows], device=device)
    counts = torch.stack([r.counts for _, r in rows])
    generated = counts > 0
    part = logits[index]

    def column(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=logits.dtype, device=device)[:, None]

    repetition = column([r.params.repetition_penalty for _, r in rows])
    seen = generated | torch.stack([r.in_prompt for _, r in rows])
    part = torch.where(seen, torch.where(part > 0, part / repetition, part * repetition), part)
    part -= column([r.params.frequency_penalty for _, r in rows]) * counts
    part -= column([r.params.presence_penalty for _, r in rows]) * generated
    logits[index] = part
