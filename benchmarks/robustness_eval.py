"""Accuracy of a fine-tuned SST-2 model on the dev set, clean and under each perturbation (what
``leptonkit eval REF --data ... --perturb ...`` reports). Writes ``benchmarks/results/robustness_eval.json``.

The model is ``--model`` in ``--home`` (default: the plain SST-2 MiniLM of ``benchmarks/robustness_adversarial.py``).

    .venv/bin/python benchmarks/robustness_eval.py [--model sst2-plain] [--rate 0.1] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from results_io import machine, write_result

# a sibling script: Python puts this folder on sys.path when running a script from it
from robustness_adversarial import DEFAULT_HOME, prepared_sst2

PERTURBATIONS = ["typos", "case", "punctuation", "synonyms", "pii"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sst2-plain")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--rate", type=float, default=0.1)
    args = parser.parse_args()
    info = machine()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["LEPTONKIT_HOME"] = str(args.home)

    from leptonkit.registry import Registry
    from leptonkit.train.robustness import evaluate_robustness

    data = args.home / "sst2-data"
    if not (data / "test.jsonl").is_file():
        prepared_sst2(data, 8000)
    start = time.perf_counter()
    report = evaluate_robustness(args.model, data, PERTURBATIONS, rate=args.rate, registry=Registry(args.home))
    result = {
        "benchmark": "robustness_eval",
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "model": args.model,
        "data": "SST-2 dev (test split of the prepared folder)",
        "seconds": round(time.perf_counter() - start, 1),
    } | report
    write_result("robustness_eval", result, info)
    print(json.dumps({k: v["drop"] for k, v in report["perturbed"].items()}, indent=2))


if __name__ == "__main__":
    main()
