"""glibc keeps freed training memory inside keep_freed_memory: a freed large tensor comes back without page faults.

Each check runs in a fresh interpreter: glibc's malloc settings are process-wide, and what other tests did to them
(a training loop, a server) must not decide the result."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from leptonkit.train.allocator import glibc

pytestmark = pytest.mark.skipif(glibc() is None, reason="the C library is not glibc")

PAGES = 64 * 2**20 // 4096  # of the 64 MB block below

SCRIPT = """
import json, resource, sys
import torch
from leptonkit.train.allocator import keep_freed_memory

def faults_per_allocation(rounds=5):
    torch.ones(16 * 2**20)  # a first 64 MB block: new pages either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        torch.ones(16 * 2**20)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds

enabled = sys.argv[1] == "on"
faults = {"before": faults_per_allocation()}
with keep_freed_memory(enabled) as applied:
    for _ in range(3):  # glibc's heap grows until it holds the block and the slack of its alignment
        faults_per_allocation()
    faults["inside"] = faults_per_allocation()
faults["after"] = faults_per_allocation()
print(json.dumps({"applied": applied, **faults}))
"""


def faults(enabled: bool) -> dict:
    """Page faults per 64 MB allocation before, inside and after ``keep_freed_memory(enabled)``, in a new process."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "on" if enabled else "off"], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_freed_blocks_are_reused_inside_and_glibc_defaults_return_after() -> None:
    seen = faults(enabled=True)
    assert seen["applied"]
    assert seen["before"] > PAGES / 2  # glibc's defaults: mmap, unmap, fault every page again
    assert seen["inside"] < PAGES / 100
    assert seen["after"] > PAGES / 10  # mapped and unmapped again (a first block may still come from the heap)


def test_disabled_changes_nothing() -> None:
    seen = faults(enabled=False)
    assert not seen["applied"]
    assert min(seen["before"], seen["inside"], seen["after"]) > PAGES / 2
