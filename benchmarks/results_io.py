"""Where the benchmarks find the shared data sets and write their results (imported by every benchmark).

A results file keeps its history: ``results/NAME.json`` is ``{"benchmark": NAME, "runs": [...]}`` and every run
appends one entry, stamped with the time, the git commit and the machine (versions, thread counts, load). A file
written before history was kept becomes the first entry, marked ``"before_history": true``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED = REPO.parent / "shared" / "data"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND")


def machine() -> dict[str, Any]:
    """The machine a run measured: CPU, cores, torch threads, thread variables, load, library versions."""
    import torch

    from leptonkit.versions import cpu_supports_bf16, library_versions

    return {
        "cpu": cpu_model(),
        "cpu_vector_flags": cpu_flags(("avx2", "avx512f", "avx512_bf16", "amx_bf16")),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "thread_variables": {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
        "bf16": cpu_supports_bf16(),
        "load_average_at_start": os.getloadavg(),
        "libraries": library_versions(),
    }


def cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags(names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` the CPU has: bf16 matmuls are native only with AVX-512 BF16 or AMX."""
    flags = next((line.split(":", 1)[1].split() for line in _cpuinfo().splitlines() if line.startswith("flags")), [])
    return [name for name in names if name in flags]


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def git_commit() -> str | None:
    """HEAD, with ``+dirty`` when tracked files under ``src/`` or ``benchmarks/`` differ from it."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        diff = subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "src", "benchmarks/*.py"])
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if diff.returncode else "")


def history(name: str, folder: Path = RESULTS) -> list[dict[str, Any]]:
    """The runs already recorded in ``FOLDER/NAME.json`` (oldest first; ``folder`` is ``results/`` unless given)."""
    path = folder / f"{name}.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    if isinstance(data, dict) and isinstance(data.get("runs"), list) and data.get("history") is True:
        return data["runs"]
    return [{"before_history": True, **data}] if isinstance(data, dict) else [{"before_history": True, "data": data}]


def write_result(name: str, result: dict[str, Any], info: dict[str, Any] | None = None) -> Path:
    """Append ``result`` as a new run of ``results/NAME.json``; its path is printed and returned.

    ``info`` is the :func:`machine` taken at the start of the run (taken now when not given).
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    run = {
        "recorded_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": info if info is not None else result.pop("machine", None) or machine(),
        **{k: v for k, v in result.items() if k != "machine"},
    }
    runs = [*history(name), run]
    path.write_text(json.dumps({"benchmark": name, "history": True, "runs": runs}, indent=2, default=str) + "\n")
    print(f"wrote {path} (run {len(runs)})")
    return path
