"""The table at the top of benchmarks/README.md is what benchmarks/summary.py makes of benchmarks/results/."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def summary(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their siblings (results_io) by name
    return importlib.import_module("summary")


def test_readme_table_is_the_summary_of_the_results(summary: ModuleType) -> None:
    readme = (BENCHMARKS / "README.md").read_text()
    between = readme.split(summary.START, 1)[1].split(summary.END, 1)[0]
    assert between.strip() == summary.table(), "run `.venv/bin/python benchmarks/summary.py --write`"


def lora_run(base: float, mixed: float, recorded_at: str) -> dict:
    return {
        "recorded_at": recorded_at,
        "base": {"output_throughput": base},
        "eight_adapters_mixed": {"output_throughput": mixed},
        "ratio": mixed / base,
    }


def test_counts_the_runs_that_met_and_shows_the_newest(summary: ModuleType, tmp_path: Path) -> None:
    runs = [lora_run(1000.0, 900.0, "2026-12-05T10:00:00+00:00"), lora_run(1000.0, 700.0, "2026-12-06T10:00:00+00:00")]
    (tmp_path / "serve_lora.json").write_text(json.dumps({"benchmark": "serve_lora", "history": True, "runs": runs}))
    target = next(t for t in summary.TARGETS if t.file == "serve_lora")

    cells = summary.row(target, tmp_path)

    assert cells[3:8] == ["base alone 1,000 tok/s", "700 tok/s (0.700x)", "no", "1 of 2", "2026-12-06"]


def test_a_run_that_does_not_measure_a_target_is_recorded_not_counted(summary: ModuleType, tmp_path: Path) -> None:
    runs = [lora_run(1000.0, 900.0, "2026-12-05T10:00:00+00:00"), {"recorded_at": "2026-12-06T10:00:00+00:00"}]
    (tmp_path / "serve_lora.json").write_text(json.dumps({"benchmark": "serve_lora", "history": True, "runs": runs}))
    target = next(t for t in summary.TARGETS if t.file == "serve_lora")

    cells = summary.row(target, tmp_path)

    assert cells[4:8] == ["900 tok/s (0.900x)", "yes", "1 of 1 (2 recorded)", "2026-12-05"]


def test_no_results_file_reads_not_measured(summary: ModuleType, tmp_path: Path) -> None:
    assert all(summary.row(target, tmp_path)[4] == "not measured" for target in summary.TARGETS)
