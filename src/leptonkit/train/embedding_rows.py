"""The word embeddings' gradient kept in one buffer across steps and written by rows: the same gradient, less memory
traffic.

A batch of text touches a few hundred of a vocabulary's rows (MiniLM: about 480 of 30,522 in a batch of 32 SST-2
sentences), yet PyTorch's embedding backward allocates the whole dense gradient every step and zero-fills it (47 MB
for MiniLM), and the clipping norm then reads all of it. Here the gradient lives in a buffer that stays allocated: a
backward sums the batch's rows per id, in the order the dense backward does, and adds each row's sum into the buffer
(as autograd adds a second backward's gradient); the norm reads only the rows touched; and when the next step's
backward begins (the loop has set ``.grad`` to None) only those rows are zeroed again. The optimiser still gets the
full dense gradient, untouched rows zero, so AdamW's update (weight decay, moments) is exactly the one it makes
otherwise; in the tests the gradients are bit for bit the dense backward's, accumulation included. Measured on
MiniLM-L6 bf16 fine-tuning (batch 32, SST-2, 2-core AMD EPYC Zen 5, in-loop profiles, dev rows): ``fill_`` went
from 1.7-2.2 ms a step to 0.15-0.3 ms, the norm from 3.0 to 1.6 ms.

Only a plain ``nn.Embedding`` that trains (no ``max_norm``, ``scale_grad_by_freq`` or sparse gradients, not tied to
an LM head) and only in a single process: a data-parallel wrapper hooks the gradient accumulation this bypasses. The
change is a ``forward`` set on the embedding instance inside :func:`row_gradients` and removed after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


class RowGradients:
    """The persistent gradient of one embedding matrix and the rows written into it since it was last zeroed."""

    def __init__(self, embedding: torch.nn.Embedding) -> None:
        self.embedding = embedding
        self.buffer = torch.zeros_like(embedding.weight)
        self.touched: torch.Tensor | None = None  # sorted unique row ids with values in ``buffer``

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return _Lookup.apply(ids, self.embedding.weight, self)

    def accumulate(self, ids: torch.Tensor, grad: torch.Tensor) -> None:
        """Add a backward's rows to the weight's gradient, which is the buffer unless someone else set one."""
        weight = self.embedding.weight
        if weight.grad is None:  # a new step: the rows of the last one go back to zero
            if self.touched is not None:
                self.buffer.index_fill_(0, self.touched, 0)
            self.touched = None
            weight.grad = self.buffer
        ids, grad = ids.reshape(-1), grad.reshape(-1, grad.shape[-1]).to(weight.grad.dtype)
        if self.embedding.padding_idx is not None:
            real = ids != self.embedding.padding_idx
            ids, grad = ids[real], grad[real]
        rows, inverse = ids.unique(return_inverse=True)
        sums = grad.new_zeros(len(rows), grad.shape[1]).index_add_(0, inverse, grad)  # this backward's, as dense
        weight.grad.index_add_(0, rows, sums)  # one add per row, as autograd adds a second backward's gradient
        self.touched = rows if self.touched is None else torch.cat([self.touched, rows]).unique()

    def norm_operands(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """``grads`` with the buffer replaced by its touched rows, which have the same norm."""
        if self.touched is None:
            return grads
        return [self.buffer[self.touched] if g is self.buffer else g for g in grads]


class _Lookup(torch.autograd.Function):
    """``F.embedding`` whose backward writes into :class:`RowGradients` and returns no weight gradient to autograd."""

    @staticmethod
    def forward(ctx: Any, ids: torch.Tensor, weight: torch.Tensor, rows: RowGradients) -> torch.Tensor:
        ctx.ids, ctx.rows = ids, rows
        return torch.nn.functional.embedding(ids, weight, rows.embedding.padding_idx)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None]:
        ctx.rows.accumulate(ctx.ids, grad)
        return None, None, None


def _plain(model: torch.nn.Module, embedding: Any) -> bool:
    """A trained ``nn.Embedding`` with no options that change its backward, whose weight nothing else uses: a tied
    LM head adds a dense gradient to the same weight, which the touched rows would not cover."""
    return (
        type(embedding) is torch.nn.Embedding
        and embedding.weight.requires_grad
        and embedding.max_norm is None
        and not embedding.scale_grad_by_freq
        and not embedding.sparse
        and sum(p is embedding.weight for _, p in model.named_parameters(remove_duplicate=False)) == 1
    )


@contextlib.contextmanager
def row_gradients(model: torch.nn.Module, enabled: bool = True) -> Iterator[RowGradients | None]:
    """Within the block, ``model``'s input embeddings keep their gradient in a :class:`RowGradients` (yielded), or
    nothing changes (None) when disabled or when they are not a plain, trained, untied ``nn.Embedding``."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if enabled and callable(get) else None
    if not _plain(model, embedding):
        yield None
        return
    rows = RowGradients(embedding)
    embedding.forward = rows.forward
    try:
        yield rows
    finally:
        del embedding.forward
