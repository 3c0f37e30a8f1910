"""De-duplication: exact (normalised text) and near-duplicate (MinHash LSH from ``datasketch``).

The first occurrence wins. Inputs are read train first, then valid, then test, so a duplicate that crosses splits
is always removed from the evaluation split and reported as ``leakage`` rather than ``duplicate``. Memory per record
is one 8-byte digest (exact) plus the LSH bands (near), never the text.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from leptonkit.errors import InvalidInputError

DEDUP_MODES = ("exact", "near", "off")
NUM_PERM = 64
SHINGLE_WORDS = 3
MIN_SHINGLES = 3  # shorter texts are only compared exactly: a 2-shingle Jaccard is too coarse to call "near"
_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+")


def dedup_key(text: str) -> str:
    """What two texts must share to be exact duplicates: case and spacing do not count (punctuation does)."""
    return _SPACE.sub(" ", text.casefold()).strip()


class Deduplicator:
    """Answers, per record in reading order: ``None`` (keep), ``"duplicate"`` or ``"leakage"`` (seen in another
    split)."""

    def __init__(self, mode: str = "near", *, threshold: float = 0.8, seed: int = 1) -> None:
        if mode not in DEDUP_MODES:
            raise InvalidInputError(f"unknown --dedup {mode!r}", hint=f"use one of: {', '.join(DEDUP_MODES)}")
        if not 0 < threshold <= 1:
            raise InvalidInputError(f"--near-threshold must be in (0, 1], got {threshold}")
        self.mode = mode
        self.threshold = threshold
        self._signatures: list[bytes] = []
        self.seed = seed
        self._seen: dict[bytes, str] = {}
        self._lsh = None
        self._lsh_split: list[str] = []
        if mode == "near":
            from datasketch import MinHash, MinHashLSH

            self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
            self._permutations = MinHash(
                num_perm=NUM_PERM, seed=seed, scheme="affine32"
            ).permutations  # drawn once, not per record

    def check(self, text: str, split: str) -> str | None:
        """Record ``text`` of ``split`` as seen and say whether it repeats an earlier one.

        With ``mode="off"`` only cross-split repeats count (leakage is never allowed); repeats inside a split stay.
        """
        key = dedup_key(text)
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        first = self._seen.get(digest)
        if first is not None:
            if first != split:
                return "leakage"
            return None if self.mode == "off" else "duplicate"
        self._seen[digest] = split
        if self._lsh is not None:
            near = self._near(key, split)
            if near is not None:
                return near
        return None

    def _near(self, key: str, split: str) -> str | None:
        from datasketch import MinHash

        words = _NOT_WORD.sub(" ", key).split()
        if len(words) < SHINGLE_WORDS + MIN_SHINGLES - 1:
            return None
        shingles = {" ".join(words[i : i + SHINGLE_WORDS]).encode() for i in range(len(words) - SHINGLE_WORDS + 1)}
        minhash = MinHash(num_perm=NUM_PERM, seed=self.seed, permutations=self._permutations, scheme="affine32")
        minhash.update_batch(list(shingles))
        signature = minhash.hashvalues.astype(np.uint32)  # affine32 values fit; half the memory of uint64
        # LSH candidates are probable matches only: confirm each with the estimated Jaccard similarity.
        hits = [
            i
            for i in self._lsh.query(minhash)
            if np.mean(np.frombuffer(self._signatures[i], dtype=np.uint32) == signature) >= self.threshold
        ]
        if hits:
            return "leakage" if any(self._lsh_split[i] != split for i in hits) else "duplicate"
        self._lsh.insert(len(self._lsh_split), minhash, check_duplication=False)
        self._lsh_split.append(split)
        self._signatures.append(signature.tobytes())
        return None
