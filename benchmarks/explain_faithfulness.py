"""Faithfulness and cost of explanations on SST-2 dev with a fine-tuned MiniLM.

Comprehensiveness (ERASER, DeYoung et al. 2020): for each dev sentence, delete its top-20% words by attribution
(at least one) and measure how much the probability of the originally predicted class falls; do the same with as
many randomly chosen words (averaged over ``--random-draws`` draws). Target: the mean fall with the attributed words
is at least 2x the mean fall with random words. Timing target: one explanation (integrated gradients, 32 steps) of
an SST-2 sentence takes under 1 s on this machine. Gradient x input is measured alongside for comparison.

The model is ``--model`` (a registry reference in ``--home``); by default the plain SST-2 MiniLM that
``benchmarks/robustness_adversarial.py`` registers (trained here first when absent). Writes
``benchmarks/results/explain_faithfulness.json``.

    .venv/bin/python benchmarks/explain_faithfulness.py [--model sst2-plain] [--limit N] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from pathlib import Path

from results_io import machine, write_result

# a sibling script: Python puts this folder on sys.path when running a script from it
from robustness_adversarial import DEFAULT_HOME, SST2, fine_tuned, prepared_sst2, read_tsv

TOP_FRACTION = 0.2


def without(words: list[str], drop: set[int]) -> str:
    return " ".join(w for i, w in enumerate(words) if i not in drop)


def comprehensiveness(loaded, dev: list[dict], method: str, steps: int, draws: int, seed: int = 0) -> dict:
    """Mean probability falls (attributed vs random deletions) and per-explanation seconds for one method."""
    from leptonkit.explain.explainer import explain
    from leptonkit.inference import classify

    rng = random.Random(seed)
    seconds, cases = [], []
    for row in dev:
        start = time.perf_counter()
        result = explain(loaded, row["text"], method=method, steps=steps)
        seconds.append(time.perf_counter() - start)
        words = [a["word"] for a in result["attributions"]]
        k = max(1, math.ceil(TOP_FRACTION * len(words)))
        top = sorted(range(len(words)), key=lambda i: -result["attributions"][i]["score"])[:k]
        randoms = [set(rng.sample(range(len(words)), k)) for _ in range(draws)]
        cases.append((result["label"], result["score"], without(words, set(top)), [without(words, r) for r in randoms]))
    texts = [t or "." for _, _, top_text, random_texts in cases for t in (top_text, *random_texts)]
    probs = iter(classify(loaded, texts))
    top_falls, random_falls = [], []
    for label, score, _, random_texts in cases:
        top_falls.append(score - next(probs)["scores"][label])
        random_falls.append(score - statistics.mean(next(probs)["scores"][label] for _ in random_texts))
    mean_top, mean_random = statistics.mean(top_falls), statistics.mean(random_falls)
    return {
        "method": method,
        "steps": steps if method == "ig" else None,
        "mean_prob_fall_top20": round(mean_top, 4),
        "mean_prob_fall_random": round(mean_random, 4),
        "ratio": round(mean_top / mean_random, 2) if mean_random > 0 else None,
        "seconds_per_explanation": {
            "mean": round(statistics.mean(seconds), 3),
            "median": round(statistics.median(seconds), 3),
            "p95": round(sorted(seconds)[int(0.95 * (len(seconds) - 1))], 3),
            "max": round(max(seconds), 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sst2-plain")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N dev sentences.")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--random-draws", type=int, default=3)
    args = parser.parse_args()
    info = machine()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["LEPTONKIT_HOME"] = str(args.home)

    from leptonkit.registry import Registry
    from leptonkit.registry.loading import load_model
    from leptonkit.train.evaluate import evaluate_classification

    registry = Registry(args.home)
    if not registry.list(args.model):
        fine_tuned(registry, args.model, prepared_sst2(args.home / "sst2-data", 8000), 250, None)
    loaded = load_model(args.model, registry=registry)
    dev = read_tsv(SST2 / "dev.tsv")[: args.limit]
    ig = comprehensiveness(loaded, dev, "ig", args.steps, args.random_draws)
    print(json.dumps(ig))
    gxi = comprehensiveness(loaded, dev, "gxi", args.steps, args.random_draws)
    print(json.dumps(gxi))
    result = {
        "benchmark": "explain_faithfulness",
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "model": loaded.version.ref if loaded.version else args.model,
        "model_dev_accuracy": round(evaluate_classification(loaded, dev)["accuracy"], 4),
        "sentences": len(dev),
        "top_fraction": TOP_FRACTION,
        "random_draws": args.random_draws,
        "ig": ig,
        "gxi": gxi,
        "targets": {
            "comprehensiveness_ratio_at_least_2": {"ratio": ig["ratio"], "met": (ig["ratio"] or 0) >= 2},
            "ig_32_steps_under_1s": {
                "mean_s": ig["seconds_per_explanation"]["mean"],
                "met": ig["seconds_per_explanation"]["mean"] < 1.0,
            },
        },
    }
    write_result("explain_faithfulness", result, info)
    print(json.dumps(result["targets"], indent=2))


if __name__ == "__main__":
    main()
