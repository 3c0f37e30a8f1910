"""Helpers shared by the fine-tuning benchmarks: SST-2/CoNLL slices prepared by leptonkit, and result files."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

from results_io import REPO, RESULTS, SHARED, machine, write_result  # noqa: F401  (re-exported)

WORK = Path(tempfile.gettempdir()) / "leptonkit-bench"  # prepared data, reused between runs


def _sample_lines(source: Path, target: Path, rows: int | None, seed: int) -> Path:
    """A header-preserving random sample of a tsv file (all rows when ``rows`` is None)."""
    header, *body = source.read_text(encoding="utf-8").splitlines(keepends=True)
    if rows is not None and rows < len(body):
        body = random.Random(seed).sample(body, rows)
    target.write_text(header + "".join(body), encoding="utf-8")
    return target


def prepared_sst2(train_rows: int | None, seed: int = 0) -> Path:
    """SST-2 prepared by ``leptonkit.data.prepare``: a sample of train, and dev as the validation split."""
    from leptonkit.data import prepare

    out = WORK / f"sst2-{train_rows or 'all'}-{seed}"
    if (out / "manifest.json").is_file():
        return out
    raw = WORK / f"sst2-raw-{train_rows or 'all'}-{seed}"
    raw.mkdir(parents=True, exist_ok=True)
    train = _sample_lines(SHARED / "sst2" / "train.tsv", raw / "train.tsv", train_rows, seed)
    dev = (SHARED / "sst2" / "dev.tsv").read_text(encoding="utf-8")
    (raw / "valid.tsv").write_text(dev, encoding="utf-8")
    prepare(
        [str(train), str(raw / "valid.tsv")],
        task="classification",
        out=str(out),
        pii="off",
        dedup="off",
        overwrite=True,
    )
    return out


def prepared_conll() -> Path:
    """CoNLL-2003 train/valid/test prepared by ``leptonkit.data.prepare`` (no de-duplication, no PII masking)."""
    from leptonkit.data import prepare

    out = WORK / "conll2003"
    if not (out / "manifest.json").is_file():
        files = [str(SHARED / "conll2003" / f"{name}.txt") for name in ("train", "valid", "test")]
        prepare(files, task="ner", out=str(out), pii="off", dedup="off", overwrite=True)
    return out


def finetune_once(data: Path, task: str, method: str, home: Path, **overrides: Any) -> dict[str, Any]:
    """One ``leptonkit.finetune`` run on ``builtin:minilm``; the registered version's metrics and timing."""
    import time

    os.environ["LEPTONKIT_HOME"] = str(home)
    from leptonkit import finetune

    start = time.perf_counter()
    version = finetune(base="builtin:minilm", data=data, task=task, method=method, name=f"bench-{method}", **overrides)
    return {
        "method": method,
        "ref": version.ref,
        "kind": version.kind,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "metrics": version.metrics,
        "recipe_train": version.lineage["recipe"]["train"],
    }


def print_one_run(data: Path, task: str, method: str, max_minutes: float | None, **overrides: Any) -> None:
    """The ``--only METHOD`` child of :func:`run_each_in_subprocess`: one run in a fresh registry, as a JSON line."""
    extra = {"max_minutes": max_minutes} if max_minutes else {}
    with tempfile.TemporaryDirectory() as home:
        result = finetune_once(data, task, method, Path(home), **overrides, **extra)
    print(json.dumps(result, default=str))


def run_each_in_subprocess(script: Path, methods: list[str], argv: list[str]) -> list[dict[str, Any]]:
    """Run ``script --only METHOD ...`` per method, so each has its own peak memory; collect their JSON lines."""
    import subprocess
    import sys

    results = []
    for method in methods:
        proc = subprocess.run(
            [sys.executable, str(script), "--only", method, *argv], capture_output=True, text=True, check=False
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            results.append({"method": method, "error": proc.stderr.strip().splitlines()[-1:]})
        else:
            results.append(json.loads(lines[-1]))
        print(json.dumps(results[-1])[:400], flush=True)
    return results
