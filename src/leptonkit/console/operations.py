"""The operations view: a server's ``/metrics`` scraped every few seconds, summarised like ``leptonkit top``, and
the Prometheus alert rules judged against the same numbers when no Prometheus is at hand.

Rules come from ``deploy/prometheus/alerts.yml`` (or ``leptonkit console --alerts FILE``). PromQL is not evaluated
here: each known rule name maps to the quantity its expression computes (5xx ratio, p99 latency, waiting requests,
resident memory, GPU memory share, the server answering), compared with the threshold read from the expression's
last ``> NUMBER`` (arithmetic such as ``0.9 * 16 * 1024`` allowed). The rule's ``for:`` duration is shown, not
waited for: "firing" here means the condition holds now. A rule of another name is listed as not evaluated.
"""

from __future__ import annotations

import ast
import operator
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leptonkit.monitor.summary import Scrape, parse, summarize

DEFAULT_RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "alerts.yml"  # a source checkout


def _gpu_share(summary: dict[str, Any], scrape: Scrape | None) -> float | None:
    if scrape is None or not scrape.totals.get("leptonkit_gpu_memory_total_bytes"):
        return None
    return scrape.totals.get("leptonkit_gpu_memory_used_bytes", 0.0) / scrape.totals["leptonkit_gpu_memory_total_bytes"]


# rule name -> the value its expression computes, from the summary between two scrapes and the latest scrape
QUANTITIES = {
    "LeptonkitDown": lambda summary, scrape: 0.0 if scrape is None else 1.0,  # up{...} == 0
    "LeptonkitHighErrorRate": lambda summary, scrape: summary.get("error_ratio"),
    "LeptonkitHighP99Latency": lambda summary, scrape: summary.get("latency_p99_s"),
    "LeptonkitQueueSaturated": lambda summary, scrape: summary.get("max_waiting"),
    "LeptonkitHighMemory": lambda summary, scrape: summary.get("rss_bytes"),
    "LeptonkitGpuMemoryHigh": _gpu_share,
}
_COMPARISON = re.compile(r"(==|>|<)\s*([0-9.eE+\-*/ ()]+)\s*$")
_OPERATORS = {ast.Mult: operator.mul, ast.Div: operator.truediv, ast.Add: operator.add, ast.Sub: operator.sub}
_COMPARE = {">": operator.gt, "<": operator.lt, "==": operator.eq}


def _arithmetic(text: str) -> float:
    """A number written as arithmetic (``0.9 * 16 * 1024``), evaluated without ``eval``."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(text)

    return value(ast.parse(text.strip(), mode="eval").body)


@dataclass
class Rule:
    name: str
    expr: str
    for_: str | None
    severity: str | None
    summary: str | None

    def judge(self, summary: dict[str, Any], scrape: Scrape | None) -> dict[str, Any]:
        """``{"name", "state": firing|ok|no data|not evaluated, "value", "threshold", ...}``."""
        out = {
            "name": self.name,
            "for": self.for_,
            "severity": self.severity,
            "expr": self.expr.strip(),
            "value": None,
            "threshold": None,
        }
        match = _COMPARISON.search(self.expr.strip())
        quantity = QUANTITIES.get(self.name)
        if quantity is None or match is None:
            return out | {"state": "not evaluated"}
        try:
            threshold = _arithmetic(match.group(2))
        except (ValueError, SyntaxError, ZeroDivisionError):
            return out | {"state": "not evaluated"}
        value = quantity(summary, scrape)
        out |= {"threshold": threshold, "value": value}
        if value is None:
            return out | {"state": "no data"}
        return out | {"state": "firing" if _COMPARE[match.group(1)](value, threshold) else "ok"}


def load_rules(path: Path | None) -> tuple[list[Rule], str | None]:
    """The alerting rules of a Prometheus rules file, and why none could be read (``None`` when fine)."""
    path = path or DEFAULT_RULES
    if not path.is_file():
        return [], f"no alert rules file at {path} (pass --alerts FILE)"
    import yaml

    try:
        document = yaml.safe_load(path.read_text())
        rules = [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]
        return [
            Rule(
                r["alert"],
                str(r["expr"]),
                r.get("for"),
                (r.get("labels") or {}).get("severity"),
                (r.get("annotations") or {}).get("summary"),
            )
            for r in rules
        ], None
    except (yaml.YAMLError, KeyError, TypeError) as err:
        return [], f"{path} is not a Prometheus rules file: {err}"


class Watcher:
    """The last scrape of one server, so that each poll reports the rates since the previous one."""

    def __init__(self) -> None:
        self.previous: Scrape | None = None

    def observe(self, text: str | None) -> tuple[dict[str, Any], Scrape | None]:
        """The summary since the previous scrape (``text`` None: the scrape failed), and this scrape."""
        if text is None:
            return {}, None
        scrape = parse(text, time.monotonic())
        before = self.previous if self.previous is not None and self.previous.at < scrape.at else None
        self.previous = scrape
        summary: dict[str, Any] = summarize(before or scrape, scrape)
        if before is None:  # one scrape: its gauges, but no rates yet
            summary |= {k: None for k in summary if k.endswith("_per_s") or k in ("error_ratio", "cpu_cores")}
        summary["requests_total"] = scrape.totals.get("leptonkit_requests_total", 0.0)
        summary["rss_bytes"] = scrape.totals.get("leptonkit_process_resident_memory_bytes")
        gauges = per_model(text, MODEL_GAUGES)
        summary["max_waiting"] = max(gauges["waiting"].values(), default=0.0)
        summary["models"] = {
            model: {column: values.get(model) for column, values in gauges.items()}
            for model in sorted({model for values in gauges.values() for model in values})
        }
        summary["measured_seconds"] = round(scrape.at - before.at, 2) if before is not None else None
        return summary, scrape


MODEL_GAUGES = {
    "running": "leptonkit_num_requests_running",
    "waiting": "leptonkit_num_requests_waiting",
    "memory_bytes": "leptonkit_model_memory_bytes",
}


def per_model(text: str, names: dict[str, str]) -> dict[str, dict[str, float]]:
    """``{column: {model: value}}`` of the gauges ``names`` maps columns to, labelled by model, in one parse."""
    from prometheus_client.parser import text_string_to_metric_families

    columns = {metric: column for column, metric in names.items()}
    out: dict[str, dict[str, float]] = {column: {} for column in names}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            column = columns.get(sample.name)
            if column is not None and "model" in sample.labels:
                model = sample.labels["model"]
                out[column][model] = out[column].get(model, 0.0) + sample.value
    return out
