"""The peak memory of a training run on CPU: measured from a reset point, so earlier peaks do not count."""

from __future__ import annotations

import sys

import pytest
import torch

from leptonkit.monitor.resources import peak_memory_mb, start_peak_memory

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the resident high-water mark resets on Linux only")


def test_the_peak_counts_from_the_reset_and_sees_a_later_allocation() -> None:
    cpu = torch.device("cpu")
    big = torch.ones(300 * 2**20 // 4)  # 300 MB resident before the reset
    del big
    at_start = start_peak_memory(cpu)
    assert at_start is not None and peak_memory_mb(cpu) < at_start + 200  # the earlier 300 MB no longer counts
    held = torch.ones(200 * 2**20 // 4)
    assert peak_memory_mb(cpu) >= at_start + 190
    del held
