"""Sub-word attributions with Captum on a model's input embeddings.

Two methods, both attributing to the output of ``model.get_input_embeddings()`` (which also finds the embedding
layer under a PEFT wrapper):

- ``ig``: Integrated Gradients from a baseline that keeps the special tokens ([CLS], [SEP]) and replaces every
  other token by the pad token. Completeness holds: the token scores sum to ``F(input) - F(baseline)`` up to the
  reported convergence ``delta`` (position and segment embeddings are identical on both paths, so only the word
  embeddings move).
- ``gxi``: gradient times input, one backward pass; cheap, no completeness guarantee.

``F`` is any scalar function of the model's output per sequence (a class logit, or the summed logits of an
entity's predicted tags), given as ``target_fn(logits) -> tensor[batch]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from leptonkit.explain.checks import DEFAULT_STEPS

TargetFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TokenAttributions:
    """One score per sub-word (summed over the embedding dimension), aligned with ``input_ids``."""

    scores: list[float]
    delta: float | None
    target_value: float
    baseline_value: float | None


def baseline_ids(input_ids: torch.Tensor, special_mask: torch.Tensor, tokenizer) -> torch.Tensor:
    """The IG reference input: special tokens kept, every other token replaced by [PAD] (or [UNK] without one)."""
    reference = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.unk_token_id
    if reference is None:
        reference = 0
    return torch.where(special_mask.bool(), input_ids, torch.full_like(input_ids, reference))


def attribute(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    baseline: torch.Tensor,
    target_fn: TargetFn,
    *,
    method: str = "ig",
    steps: int = DEFAULT_STEPS,
) -> TokenAttributions:
    """Attribute ``target_fn(model(input_ids).logits)`` to each sub-word of one sequence (batch of one)."""
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return target_fn(model(input_ids=ids, attention_mask=mask).logits.float())

    layer = model.get_input_embeddings()
    with torch.no_grad():
        target_value = float(forward(input_ids, attention_mask)[0])
    if method == "gxi":
        attributions = LayerGradientXActivation(forward, layer).attribute(
            input_ids, additional_forward_args=(attention_mask,)
        )
        return TokenAttributions(_per_token(attributions), None, target_value, None)
    attributions, delta = LayerIntegratedGradients(forward, layer).attribute(
        input_ids,
        baselines=baseline,
        additional_forward_args=(attention_mask,),
        n_steps=steps,
        internal_batch_size=steps,
        return_convergence_delta=True,
    )
    with torch.no_grad():
        baseline_value = float(forward(baseline, attention_mask)[0])
    return TokenAttributions(_per_token(attributions), float(delta[0]), target_value, baseline_value)


def _per_token(attributions: torch.Tensor) -> list[float]:
    return attributions[0].sum(-1).detach().float().tolist()
