"""Adversarial training on the input embeddings: FGM (Miyato et al., 2017) and PGD (Madry et al., 2018).

After the normal backward pass, the word-embedding matrix is pushed along its gradient (normalised, so the
perturbation has L2 norm ``epsilon``), the loss is computed and back-propagated again on the perturbed embeddings,
and the embeddings are restored. The extra gradient makes the model robust to small changes of its inputs.
PGD takes ``steps`` smaller steps of size ``alpha``, projecting back into the ``epsilon`` ball after each.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from leptonkit.train.recipe import AdversarialSettings


class EmbeddingAttack:
    def __init__(self, settings: AdversarialSettings) -> None:
        self.settings = settings
        self.frozen = False

    def setup(self, model: torch.nn.Module) -> None:
        """Called by the loop after it built the optimiser: frozen embeddings (LoRA, freeze) still need a gradient
        to attack along, but they stay out of the optimiser and their gradient is dropped after each attack."""
        weight = self._embeddings(model)
        self.frozen = not weight.requires_grad
        weight.requires_grad_(True)

    @staticmethod
    def _embeddings(model: torch.nn.Module) -> torch.nn.Parameter:
        return model.get_input_embeddings().weight

    def attack(self, model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]) -> None:
        """Add the adversarial gradient to the parameters' ``.grad`` (the clean gradient is already there)."""
        weight = self._embeddings(model)
        if weight.grad is None:
            return
        original = weight.data.clone()
        if self.settings.method == "fgm":
            self._step(weight, self.settings.epsilon)
            loss_fn().backward()
        else:
            clean_grads = {p: p.grad.clone() for p in model.parameters() if p.grad is not None}
            for k in range(self.settings.steps):
                self._step(weight, self.settings.alpha)
                self._project(weight, original)
                if k < self.settings.steps - 1:  # intermediate steps only move the perturbation
                    for p in model.parameters():
                        if p.grad is not None:
                            p.grad.zero_()
                    loss_fn().backward()
            for p in model.parameters():  # final: clean gradient + gradient at the strongest perturbation
                if p.grad is not None:
                    p.grad.copy_(clean_grads.get(p, torch.zeros_like(p.grad)))
            loss_fn().backward()
        weight.data.copy_(original)
        if self.frozen:
            weight.grad = None

    @staticmethod
    def _step(weight: torch.nn.Parameter, size: float) -> None:
        norm = torch.linalg.vector_norm(weight.grad)
        if torch.isfinite(norm) and norm > 0:
            weight.data.add_(size * weight.grad / norm)

    def _project(self, weight: torch.nn.Parameter, original: torch.Tensor) -> None:
        delta = weight.data - original
        norm = torch.linalg.vector_norm(delta)
        if norm > self.settings.epsilon:
            weight.data.copy_(original + delta * (self.settings.epsilon / norm))
