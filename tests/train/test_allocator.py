"""glibc keeps freed training memory inside keep_freed_memory: a freed large tensor comes back without page faults."""

from __future__ import annotations

import resource

import pytest
import torch

from leptonkit.train.allocator import glibc, keep_freed_memory

pytestmark = pytest.mark.skipif(glibc() is None, reason="the C library is not glibc")


def faults_per_allocation(rounds: int = 5) -> float:
    """Minor page faults of allocating and filling a 64 MB tensor, then freeing it, averaged over ``rounds``."""
    torch.ones(16 * 2**20)  # first allocation of the block: its pages are new either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        torch.ones(16 * 2**20)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds


def test_freed_blocks_are_reused_inside_and_returned_after() -> None:
    pages = 64 * 2**20 // 4096
    assert faults_per_allocation() > pages / 2  # glibc's defaults: mmap, unmap, fault every page again
    with keep_freed_memory() as applied:
        assert applied
        faults_per_allocation()  # the heap grows to hold the block once
        assert faults_per_allocation() < pages / 100
    assert faults_per_allocation() > pages / 2  # defaults restored


def test_disabled_changes_nothing() -> None:
    with keep_freed_memory(enabled=False) as applied:
        assert not applied
        assert faults_per_allocation() > 64 * 2**20 // 4096 / 2
