"""The PII detector with no setup on Chinese text, and its names in both languages; appends a run to
``benchmarks/results/pii_eval_zh.json``.

Chinese: the set ``benchmarks/make_pii_zh.py`` builds from templates written for leptonkit and Faker ``zh_CN``
values (``benchmarks/data/pii_zh_{dev,test}.json``; disjoint templates: tune on dev, report test). English: the test
half of presidio-research's ``synth_dataset_v2.json`` as ``benchmarks/pii_eval.py`` splits it (its ``SPLIT_SEED``).
Both are scored with the default detector as a new user gets it (patterns, and the word-list and context rules for
names, places and Chinese addresses; no NER model) and with the patterns alone, whose records/s is the baseline of
the rules' cost, measured in the same run. Targets on the Chinese test half: char recall >= 0.98 for phone, ID card
and card numbers at char precision >= 0.98; overall char recall >= 0.90 at char precision >= 0.85.

    .venv/bin/python benchmarks/pii_eval_zh.py --part test
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from leptonkit.privacy.evaluate import PARTS, evaluate, load_spans_file, split_records
from leptonkit.privacy.pii import PiiDetector
from pii_eval import DEFAULT_FILE, SPLIT_SEED
from results_io import machine, write_result

DATA = Path(__file__).resolve().parent / "data"
STRUCTURED = ("PHONE", "CN_ID_CARD", "CREDIT_CARD")


def targets(default: dict[str, Any]) -> dict[str, bool]:
    per_type, overall = default["per_type"], default["overall"]
    met = {
        f"{kind}_char_recall>=0.98_at_char_precision>=0.98": (per_type[kind]["char_recall"] or 0) >= 0.98
        and (per_type[kind]["char_precision"] or 0) >= 0.98
        for kind in STRUCTURED
    }
    met["overall_char_recall>=0.90_at_char_precision>=0.85"] = (
        overall["char_recall"] >= 0.90 and overall["char_precision"] >= 0.85
    )
    return met


def scored(records: list[dict]) -> dict[str, Any]:
    """The default detector and the patterns alone on ``records``, with the rules' cost in records/s."""
    patterns = evaluate(records, PiiDetector(None, rules=False))
    default = evaluate(records, PiiDetector(None))
    return {
        "default": default,
        "patterns_only": patterns,
        "person": default["per_type"].get("PERSON"),
        "records_per_s_ratio_default_vs_patterns": round(default["records_per_s"] / patterns["records_per_s"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=PARTS, required=True, help="dev: tune on it; test: report only")
    parser.add_argument("--english", type=Path, default=DEFAULT_FILE, help="presidio-research synth_dataset_v2.json")
    args = parser.parse_args()
    info = machine()
    PiiDetector(None).detect("warm up: I am Ann Lee, 我叫王伟，住在北京")  # word lists load on first use
    chinese_file = DATA / f"pii_zh_{args.part}.json"
    chinese = load_spans_file(chinese_file)
    english = split_records(load_spans_file(args.english), args.part, SPLIT_SEED)
    result: dict[str, Any] = {
        "part": args.part,
        "chinese": {"file": str(chinese_file.relative_to(DATA.parent.parent)), "records": len(chinese)}
        | scored(chinese),
        "english": {"file": str(args.english), "split_seed": SPLIT_SEED, "records": len(english)} | scored(english),
        "model": None,
        "load_average_at_end": os.getloadavg(),
    }
    result["targets"] = targets(result["chinese"]["default"])
    write_result("pii_eval_zh", result, info)
    for language in ("chinese", "english"):
        part = result[language]
        print(language, "overall", json.dumps(part["default"]["overall"]))
        print(language, "PERSON", json.dumps(part["person"]), "records/s", part["default"]["records_per_s"])
        print(language, "records/s vs patterns only", part["records_per_s_ratio_default_vs_patterns"])
    for kind, metrics in result["chinese"]["default"]["per_type"].items():
        print("chinese", kind, json.dumps(metrics))
    print("targets", result["targets"])


if __name__ == "__main__":
    main()
