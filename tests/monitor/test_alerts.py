"""Alert rules checked and unit-tested by promtool; every metric they and the Grafana dashboard use exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import leptonkit.monitor.metrics  # noqa: F401  (registers every leptonkit_ metric)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'; .ci/run installs it)")
    return path


def _exported_names() -> set[str]:
    """Every sample name leptonkit can export, GPU gauges included (they appear only where NVML finds a GPU)."""
    names = {s.name for family in REGISTRY.collect() for s in family.samples if s.name.startswith("leptonkit_")}
    names |= {f"{m.name}{suffix}" for m in REGISTRY.collect() for suffix in ("", "_bucket", "_count", "_sum", "_total")}
    return names | {
        "leptonkit_gpu_utilization_percent",
        "leptonkit_gpu_memory_used_bytes",
        "leptonkit_gpu_memory_total_bytes",
    }


def _used_names(text: str) -> set[str]:
    return set(re.findall(r"\bleptonkit_[a-z_]+\b", text))


def test_promtool_checks_and_unit_tests_the_rules(tmp_path):
    promtool = _promtool()
    checked = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=PROMETHEUS, capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS: 6 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS, capture_output=True, text=True
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    for name in ("alerts.yml", "prometheus.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    (tmp_path / "leptonkit.key").write_text("lk-0000000000000000-placeholder\n")
    config = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_rules_and_dashboard_use_only_exported_metrics():
    exported = _exported_names()
    rules = (PROMETHEUS / "alerts.yml").read_text()
    assert _used_names(rules) <= exported
    dashboard = json.loads((DEPLOY / "grafana" / "leptonkit.json").read_text())
    exprs = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    used = _used_names(exprs)
    assert used <= exported, used - exported
    assert {
        "leptonkit_time_to_first_token_seconds_bucket",
        "leptonkit_num_requests_waiting",
        "leptonkit_process_resident_memory_bytes",
    } <= used
