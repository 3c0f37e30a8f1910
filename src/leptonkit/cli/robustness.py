"""``leptonkit eval --perturb`` (robustness): one row per data set (clean, then each perturbation) and metric."""

from __future__ import annotations

from typing import Any

from leptonkit.cli.output import print_json, print_table


def report_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = [["clean", "", name, f"{value:.4f}", ""] for name, value in result["metrics"].items()]
    for kind, perturbed in result["perturbed"].items():
        changed = f"{perturbed['changed']}/{result['n']}"
        rows += [
            [kind, changed, name, f"{value:.4f}", f"{perturbed['drop'][name]:+.4f}"]
            for name, value in perturbed["metrics"].items()
        ]
    return rows


def eval_perturbed(
    ref: str, data: str, perturb: str, *, rate: float, split: str, task: str | None, json_out: bool
) -> None:
    """Validate the perturbation request, evaluate clean and perturbed copies, and print the report."""
    from leptonkit.robustness.perturb import check_rate, parse_perturbations
    from leptonkit.train.robustness import evaluate_robustness

    kinds = parse_perturbations(perturb)
    check_rate(rate)
    result = evaluate_robustness(ref, data, kinds, rate=rate, split=split, task=task)
    if json_out:
        print_json(result)
        return
    print_table(
        f"{ref} on {split} ({result['n']} rows, {result['task']}), perturbation rate {rate}",
        ["data", "changed rows", "metric", "value", "drop"],
        report_rows(result),
    )
