"""Length-grouped batches: each batch holds examples of similar length, so dynamic padding pads little.

Padding every batch to the maximum length (as the seeds' recipe does) wastes most of the compute on pad tokens;
grouping by length keeps batches dense while the order of batches stays random. The sampler is deterministic in
``(seed, epoch)`` and can start mid-epoch, which is what an exact resume needs, and it shards batches across
data-parallel ranks so that every rank gets the same number of batches of similar length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

MEGABATCH_FACTOR = 50  # batches per sorted pool: more grouping means less padding but less randomness


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of indices; ``set_epoch`` reshuffles, ``set_start`` skips the batches already trained on."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        group_by_length: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, batch_index: int) -> None:
        """Begin the next iteration at this batch of the epoch (used once, when resuming)."""
        self.start = batch_index

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / (self.batch_size * self.world_size))

    def _global_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        size = self.batch_size * self.world_size
        if self.group_by_length:
            pool = size * MEGABATCH_FACTOR if self.shuffle else n
            order = [
                i
                for start in range(0, n, pool)
                for i in sorted(order[start : start + pool], key=lambda j: -self.lengths[j])
            ]
        if self.world_size > 1 and n % size:  # every rank needs the same number of full batches: wrap around
            order += order[: size - n % size]
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch + 1_000_003)
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        start, self.start = self.start, 0
        for batch in self._global_batches()[start:]:
            yield batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
