"""Versions of the libraries and the device in use, recorded with every registered model."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    return {
        "leptonkit": package_version("leptonkit"),
        "python": platform.python_version(),
        "torch": package_version("torch"),
        "transformers": package_version("transformers"),
        "peft": package_version("peft"),
    }


def device_description() -> str:
    """The device torch will use, e.g. ``cuda:0 (NVIDIA H100)`` or ``cpu (x86_64, bf16)``."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:0 ({torch.cuda.get_device_name(0)})"
    bf16 = " bf16" if cpu_supports_bf16() else ""
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads{bf16})"


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmul (AVX-512 BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
