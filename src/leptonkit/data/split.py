"""Splits: given ones (inputs named train/valid/test) or deterministic, streaming, label-stratified ones.

``--split 0.8,0.1,0.1`` deals records into blocks of the smallest size the ratios fit (10 here): within each label,
the n-th block of records is spread over the splits by a permutation drawn from ``(seed, label, n)``. That keeps
every label's proportions exact to one block, needs one counter per label instead of the whole dataset in memory,
and gives the same split for the same input order and seed.
"""

from __future__ import annotations

import random
from pathlib import Path

from leptonkit.errors import InvalidInputError

SPLITS = ("train", "valid", "test")
_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "validation": "valid",
    "val": "valid",
    "dev": "valid",
    "test": "test",
    "testing": "test",
    "eval": "test",
}


def split_of_path(path: Path) -> str | None:
    """``train``/``valid``/``test`` when a file's name says so (``dev.tsv`` -> valid), else ``None``."""
    stem = path.name.split(".")[0].lower()
    for word in stem.replace("-", "_").split("_")[::-1]:
        if word in _SPLIT_WORDS:
            return _SPLIT_WORDS[word]
    return None


def parse_ratios(spec: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or two numbers: no test split) to train/valid/test fractions that sum to 1."""
    try:
        values = [float(part) for part in spec.split(",")]
    except ValueError:
        values = []
    if len(values) == 2:
        values.append(0.0)
    if len(values) != 3 or any(v < 0 for v in values) or abs(sum(values) - 1) > 1e-6 or values[0] <= 0:
        raise InvalidInputError(
            f"invalid --split {spec!r}", hint="give train,valid[,test] fractions that sum to 1, e.g. 0.8,0.1,0.1"
        )
    return values[0], values[1], values[2]


def _block(ratios: tuple[float, float, float]) -> list[str]:
    """Split names for one block: the smallest size (up to 100) where every ratio times it is a whole number."""
    for size in range(1, 101):
        counts = [r * size for r in ratios]
        if all(abs(c - round(c)) < 1e-6 for c in counts):
            break
    counts = [round(r * size) for r in ratios]
    counts[0] += size - sum(counts)
    return [name for name, count in zip(SPLITS, counts, strict=True) for _ in range(count)]


class StratifiedSplitter:
    def __init__(self, ratios: tuple[float, float, float], seed: int) -> None:
        self.seed = seed
        self._block = _block(ratios)
        self._seen: dict[str, int] = {}
        self._current: dict[str, list[str]] = {}

    def assign(self, label: str = "") -> str:
        """The split of the next record with this label."""
        n = self._seen.get(label, 0)
        self._seen[label] = n + 1
        index = n % len(self._block)
        if index == 0:
            block = list(self._block)
            random.Random(f"{self.seed}\0{label}\0{n // len(self._block)}").shuffle(block)
            self._current[label] = block
        return self._current[label][index]
