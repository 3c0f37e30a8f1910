"""Training runs read back: which runs exist, their recipe, status, timing, curves and the version they registered.

A run is a folder the training loop wrote (``metrics.jsonl``, ``tensorboard/``, ``checkpoints/``, and
``result.json`` once the recipe finished). Runs are found in two places: the ``run_dir`` of every registered
version's lineage (which also links the run to its version) and the folders under ``LEPTONKIT_HOME/runs``, where
runs without ``--run-dir`` go, finished or not. Used by ``leptonkit runs`` and the web console.

A log is read line by line and a line that is not a JSON object (a run killed mid-write leaves its last line cut)
is skipped and counted, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leptonkit.errors import NotFoundError
from leptonkit.registry import Registry

METRIC_LOG = "metrics.jsonl"  # written by the training loop (train/loop.py)
RESULT_FILE = "result.json"
RUNNING_WINDOW_S = 120.0  # a run without a result whose log changed this recently is still running
_EVENT_PREFIX = "events.out.tfevents."


@dataclass
class MetricLog:
    """The records of a ``metrics.jsonl`` in order, and the numbers (1-based) of the lines that could not be read."""

    records: list[dict[str, Any]] = field(default_factory=list)
    damaged_lines: list[int] = field(default_factory=list)

    def series(self, split: str, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of every ``split`` record (``train`` or ``valid``) that has a number ``key``."""
        return [
            (int(r["step"]), float(r[key]))
            for r in self.records
            if r.get("split") == split and isinstance(r.get(key), int | float) and isinstance(r.get("step"), int)
        ]

    def keys(self, split: str) -> list[str]:
        """The numeric keys ``split`` records carry, in first-seen order (``step`` and ``epoch`` left out)."""
        seen: dict[str, None] = {}
        for record in self.records:
            if record.get("split") == split:
                for key, value in record.items():
                    if key not in ("step", "epoch", "split") and isinstance(value, int | float):
                        seen.setdefault(key)
        return list(seen)


def read_metric_log(path: Path) -> MetricLog:
    """Every readable record of a ``metrics.jsonl``; an absent file is an empty log."""
    log = MetricLog()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return log
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            log.damaged_lines.append(number)
            continue
        if isinstance(record, dict):
            log.records.append(record)
        else:
            log.damaged_lines.append(number)
    return log


@dataclass
class Run:
    """One training run folder and what is known about it."""

    id: str
    path: Path
    name: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None  # when result.json was written (a finished run)
    updated_at: str | None = None  # the last write to metrics.jsonl
    seconds: float | None = None
    steps: int | None = None
    version: str | None = None  # the registry version it registered
    recipe: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why the run's files could not be fully read

    def metric_log(self) -> MetricLog:
        return read_metric_log(self.path / METRIC_LOG)

    def to_dict(self, detail: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "updated_at": self.updated_at,
            "seconds": self.seconds,
            "steps": self.steps,
            "version": self.version,
            "path": str(self.path),
            "problem": self.problem,
        }
        if detail:
            log = self.metric_log()
            last = {
                split: next((r for r in reversed(log.records) if r.get("split") == split), None)
                for split in ("train", "valid")
            }
            out |= {
                "recipe": self.recipe,
                "result": self.result,
                "log_records": len(log.records),
                "damaged_lines": log.damaged_lines,
                "last_train": last["train"],
                "last_valid": last["valid"],
            }
        return out


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _started(folder: Path) -> float | None:
    """When the run began: the time TensorBoard wrote into its first event file's name."""
    stamps = []
    for event in (folder / "tensorboard").glob(f"{_EVENT_PREFIX}*"):
        stamp = event.name.removeprefix(_EVENT_PREFIX).split(".", 1)[0]
        if stamp.isdigit():
            stamps.append(float(stamp))
    return min(stamps, default=None)


def _describe(folder: Path, version: Any | None) -> Run:
    """A :class:`Run` from its folder and, when it registered one, its version."""
    recipe: dict[str, Any] = {}
    name = folder.name
    if version is not None:
        lineage = {k: v for k, v in version.lineage.items() if k != "run_dir"}
        recipe = lineage.get("recipe") or lineage
        name = version.name
    run = Run(id="", path=folder, name=name, status="stopped", version=version.ref if version else None, recipe=recipe)
    if not folder.is_dir():
        run.status, run.problem = "missing", f"the run folder {folder} no longer exists"
        return run
    log_path = folder / METRIC_LOG
    result_path = folder / RESULT_FILE
    started = _started(folder)
    ended = None
    if result_path.is_file():
        ended = result_path.stat().st_mtime
        try:
            run.result = json.loads(result_path.read_text())
            training = run.result.get("training") or {}
            run.status = str(training.get("status") or "finished")
            run.steps = training.get("steps")
            run.seconds = training.get("train_seconds")
        except (ValueError, AttributeError, UnicodeDecodeError):
            run.status, run.problem = "damaged", f"{RESULT_FILE} is not valid JSON"
    if log_path.is_file():
        updated = log_path.stat().st_mtime
        run.updated_at = _iso(updated)
        if ended is None:
            run.status = "running" if time.time() - updated < RUNNING_WINDOW_S else "stopped"
    if run.steps is None and log_path.is_file():
        steps = [r["step"] for r in read_metric_log(log_path).records if isinstance(r.get("step"), int)]
        run.steps = max(steps, default=None)
    run.started_at = _iso(started) if started is not None else None
    run.ended_at = _iso(ended) if ended is not None else None
    if run.seconds is None and started is not None:
        run.seconds = round((ended or time.time()) - started, 2)
    return run


def find_runs(registry: Registry) -> list[Run]:
    """Every run the registry's lineage names or ``LEPTONKIT_HOME/runs`` holds, newest first."""
    by_folder: dict[Path, Any] = {}
    for version in registry.list():
        run_dir = version.lineage.get("run_dir")
        if isinstance(run_dir, str) and run_dir:
            by_folder[Path(run_dir).expanduser()] = version
    runs_root = registry.home / "runs"
    if runs_root.is_dir():
        for folder in runs_root.iterdir():
            if folder.is_dir():
                by_folder.setdefault(folder, None)
    runs = [_describe(folder, version) for folder, version in by_folder.items()]
    seen: set[str] = set()
    for run in runs:
        run.id = run.path.name
        if run.id in seen:  # two folders of one name in different places
            run.id = f"{run.path.name}~{hashlib.sha256(str(run.path).encode()).hexdigest()[:6]}"
        seen.add(run.id)
    return sorted(runs, key=lambda r: (r.started_at or r.ended_at or "", r.id), reverse=True)


def get_run(registry: Registry, run_id: str) -> Run:
    """The run ``run_id`` names (its folder name, as :func:`find_runs` lists it)."""
    runs = find_runs(registry)
    for run in runs:
        if run.id == run_id:
            return run
    known = ", ".join(r.id for r in runs[:5]) or "none yet"
    raise NotFoundError(f"no training run {run_id!r}", hint=f"see leptonkit runs list (latest: {known})")
