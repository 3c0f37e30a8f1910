"""CPU, memory and GPU use of this process: a snapshot for training logs, the peak memory of a training run, and a
Prometheus collector for servers.

GPU figures come from NVML (``nvidia-ml-py``) when a driver and a GPU are present, and from
``torch.cuda`` memory counters otherwise; on a machine without a GPU the GPU keys are simply absent.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


@functools.cache
def _process() -> psutil.Process:
    proc = psutil.Process(os.getpid())
    proc.cpu_percent(None)  # the first call primes the counter; later calls measure since the previous one
    return proc


@functools.cache
def _nvml() -> Any | None:
    """The initialised ``pynvml`` module, or ``None`` when there is no NVIDIA driver or library."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # ImportError, or NVMLError when the driver is missing: both mean "no GPU here"
        return None
    return pynvml


def gpu_stats() -> list[dict[str, float]]:
    """Per GPU: ``index``, ``utilization`` (percent), ``memory_used_bytes``, ``memory_total_bytes``."""
    nvml = _nvml()
    if nvml is None:
        return []
    out = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        utilization = nvml.nvmlDeviceGetUtilizationRates(handle)
        out.append(
            {
                "index": index,
                "utilization": float(utilization.gpu),
                "memory_used_bytes": float(memory.used),
                "memory_total_bytes": float(memory.total),
            }
        )
    return out


def snapshot() -> dict[str, float]:
    """Resource use now, flat and ready to merge into a training step's metrics.

    Keys: ``cpu_percent`` (this process, since the previous call), ``rss_bytes``, ``system_memory_percent``, and
    per GPU ``gpu{i}_utilization``, ``gpu{i}_memory_used_bytes``; ``torch_cuda_max_allocated_bytes`` when torch
    has CUDA.
    """
    proc = _process()
    out: dict[str, float] = {
        "cpu_percent": proc.cpu_percent(None),
        "rss_bytes": float(proc.memory_info().rss),
        "system_memory_percent": psutil.virtual_memory().percent,
    }
    for gpu in gpu_stats():
        i = int(gpu["index"])
        out[f"gpu{i}_utilization"] = gpu["utilization"]
        out[f"gpu{i}_memory_used_bytes"] = gpu["memory_used_bytes"]
    torch = sys.modules.get("torch")  # only report torch's view when the caller already uses torch
    if torch is not None and torch.cuda.is_available():
        out["torch_cuda_max_allocated_bytes"] = float(torch.cuda.max_memory_allocated())
    return out


def start_peak_memory(device: Any) -> float | None:
    """Start measuring a peak on ``device`` (a ``torch.device``) and return the memory in use now (MB).

    GPU: torch's peak counter is reset. CPU: the process's resident high-water mark is reset (Linux,
    ``/proc/self/clear_refs``), so that the peak is the training's, not that of loading and tokenising before it.
    """
    if device.type == "cuda":
        import torch  # a CUDA device means torch is loaded already; monitor/ itself loads without torch

        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _proc_status_mb("VmRSS")


def peak_memory_mb(device: Any) -> float:
    """Peak GPU memory allocated by torch since :func:`start_peak_memory`, or on CPU the process's peak resident
    memory since then (Linux; elsewhere since the process started), model and libraries included."""
    if device.type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _proc_status_mb(key: str) -> float | None:
    """A memory figure (``VmRSS``, ``VmHWM``) of this process from ``/proc/self/status`` in MB, or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class GpuCollector(Collector):
    """``leptonkit_gpu_utilization_percent`` and ``leptonkit_gpu_memory_used_bytes`` per GPU, read at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = gpu_stats()
        if not stats:
            return
        utilization = GaugeMetricFamily(
            "leptonkit_gpu_utilization_percent", "GPU utilisation over the last sample period (NVML).", labels=["gpu"]
        )
        used = GaugeMetricFamily("leptonkit_gpu_memory_used_bytes", "GPU memory in use (NVML).", labels=["gpu"])
        total = GaugeMetricFamily("leptonkit_gpu_memory_total_bytes", "GPU memory in total (NVML).", labels=["gpu"])
        for gpu in stats:
            label = [str(int(gpu["index"]))]
            utilization.add_metric(label, gpu["utilization"])
            used.add_metric(label, gpu["memory_used_bytes"])
            total.add_metric(label, gpu["memory_total_bytes"])
        yield from (utilization, used, total)
