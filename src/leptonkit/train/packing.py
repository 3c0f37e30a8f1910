"""Packing token streams into fixed-length blocks: documents joined with EOS, no padding, the remainder counted."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from leptonkit.errors import InvalidInputError

IGNORE_INDEX = -100


@dataclass
class PackedBlocks:
    """``input_ids`` of shape (n_blocks, block_size); ``labels`` is None when labels equal the inputs."""

    input_ids: torch.Tensor
    labels: torch.Tensor | None
    documents: int
    tokens: int
    dropped_tokens: int

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def pack_documents(documents: Iterable[Sequence[int]], *, block_size: int, eos_id: int) -> PackedBlocks:
    """Concatenate token lists with ``eos_id`` after each and cut the stream into blocks of ``block_size``.

    The tail shorter than one block is dropped and counted in ``dropped_tokens``: callers log it.
    """
    stream: list[int] = []
    count = 0
    for ids in documents:
        stream.extend(ids)
        stream.append(eos_id)
        count += 1
    return _cut(stream, None, block_size=block_size, documents=count)


def pack_examples(examples: Iterable[tuple[Sequence[int], Sequence[int]]], *, block_size: int) -> PackedBlocks:
    """Pack ``(input_ids, labels)`` pairs (e.g. masked SFT examples) into blocks, keeping each label with its token."""
    ids: list[int] = []
    labels: list[int] = []
    count = 0
    for example_ids, example_labels in examples:
        ids.extend(example_ids)
        labels.extend(example_labels)
        count += 1
    return _cut(ids, labels, block_size=block_size, documents=count)


def _cut(ids: list[int], labels: list[int] | None, *, block_size: int, documents: int) -> PackedBlocks:
    if block_size < 2:
        raise InvalidInputError(f"block size {block_size} is too small", hint="use 2 or more", param="block_size")
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise InvalidInputError(
            f"the data holds {len(ids)} tokens, fewer than one block of {block_size}",
            hint="give more text or a smaller --block-size",
            param="block_size",
        )
    used = n_blocks * block_size
    input_ids = torch.tensor(ids[:used], dtype=torch.long).view(n_blocks, block_size)
    label_blocks = None if labels is None else torch.tensor(labels[:used], dtype=torch.long).view(n_blocks, block_size)
    return PackedBlocks(input_ids, label_blocks, documents, len(ids), len(ids) - used)


def block_features(packed: PackedBlocks) -> list[dict[str, list[int]]]:
    """One ``{"input_ids", "labels"}`` feature per block, for :func:`feature_loader`."""
    labels = packed.input_ids if packed.labels is None else packed.labels
    return [
        {"input_ids": ids, "labels": lab} for ids, lab in zip(packed.input_ids.tolist(), labels.tolist(), strict=True)
    ]


def feature_loader(
    features: list[dict[str, list[int]]], collate: Callable[[list[dict]], dict], *, batch_size: int, seed: int
) -> DataLoader:
    """A shuffled loader whose sampler can start mid-epoch (exact resume) and shards across ranks (torchrun)."""
    from leptonkit.train.batching import LengthGroupedBatchSampler
    from leptonkit.train.distributed import rank, world_size

    sampler = LengthGroupedBatchSampler(
        [len(f["input_ids"]) for f in features], batch_size, seed=seed, rank=rank(), world_size=world_size()
    )
    return DataLoader(features, batch_sampler=sampler, collate_fn=collate)
