"""The PII detector on presidio-research's synthetic set, scored on one half of it; appends a run to
``benchmarks/results/pii_eval.json``.

The file is split once, by a seeded shuffle of its sentence templates (``SPLIT_SEED``, below), into a dev half (the
detector is tuned and tested on it) and a test half (reported only): every record of a template is in the same
half. Scores the pattern-only detector, the detector as it comes (patterns and the word-list and context rules for
names and places, no model), the full detector (patterns + the NER model aliased @pii, or --pii-model),
and Presidio's AnalyzerEngine where ``presidio_analyzer`` and a spaCy English model are installed (neither is a
leptonkit dependency: spaCy's models are not on PyPI). Targets: char recall >= 0.90, char precision >= 0.85, typed
span F1 >= 0.80 (overall), char recall >= 0.98 on the pattern types.

    .venv/bin/python benchmarks/pii_eval.py --part dev [--file PATH] [--pii-model REF]
    .venv/bin/python benchmarks/pii_eval.py --part dev --setup ../shared/data/conll2003   # pii-setup, then score

``--setup`` trains the NER model with ``pii-setup``'s defaults on CoNLL (all of train; valid/test cut to
``--eval-sentences``), aliases it @pii in ``LEPTONKIT_HOME`` and records how it was built in the same run. Records/s
is measured on whatever else the machine runs: the run records the load average at its start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from leptonkit.errors import LeptonkitError
from leptonkit.privacy.evaluate import PARTS, PATTERN_TYPES, TYPE_MAP, evaluate, load_spans_file, split_records
from leptonkit.privacy.pii import PiiDetector, PiiSpan
from leptonkit.registry import Registry
from leptonkit.registry.pii import find_pii_model, pii_detector
from results_io import SHARED, machine, write_result

DEFAULT_FILE = SHARED / "pii" / "synth_dataset_v2.json"
SPLIT_SEED = 20261206  # fixed once, before any tuning on the dev half; never change it
TARGETS = {"char_recall": 0.90, "char_precision": 0.85, "f1": 0.80}


def targets(full: dict) -> dict[str, bool]:
    per_type = full["per_type"]
    met = {
        "pattern_types_char_recall>=0.98": all(
            (per_type.get(t, {}).get("char_recall") or 0) >= 0.98 for t in PATTERN_TYPES if t in per_type
        )
    }
    if full.get("model"):
        met |= {f"overall_{name}>={bound}": full["overall"][name] >= bound for name, bound in TARGETS.items()}
    return met


class PresidioDetector:
    """Presidio's analyzer behind the detector's ``detect_batch``/``types``/``model_ref``, to score both alike."""

    def __init__(self) -> None:
        from presidio_analyzer import AnalyzerEngine

        self.engine = AnalyzerEngine()
        self.types = frozenset(TYPE_MAP.values())
        self.model_ref = "presidio"

    def detect_batch(self, texts: list[str]) -> list[list[PiiSpan]]:
        out = []
        for text in texts:
            spans = []
            for r in self.engine.analyze(text=text, language="en"):
                kind = TYPE_MAP.get(r.entity_type)
                if kind:
                    spans.append(PiiSpan(r.start, r.end, kind, text[r.start : r.end], r.score, "presidio"))
            out.append(spans)
        return out


def build_detector_model(conll: Path, *, max_minutes: float | None, eval_sentences: int) -> tuple[str, dict]:
    """Run pii-setup with its default training settings on CoNLL (all of train; valid/test cut to ``eval_sentences``
    so evaluation stays cheap on CPU); ``max_minutes`` only bounds the time when given."""
    from leptonkit.train.pii_model import setup_pii_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for split in ("train", "valid", "test"):
            text = (conll / f"{split}.txt").read_text(encoding="utf-8")
            if split != "train":
                text = "\n\n".join(text.split("\n\n")[: eval_sentences + 1]) + "\n"
            (work / f"{split}.txt").write_text(text, encoding="utf-8")
        start = time.perf_counter()
        bound = {"max_minutes": max_minutes} if max_minutes else {}
        version = setup_pii_model(work, work_dir=work / "prepared", **bound)
        seconds = round(time.perf_counter() - start, 1)
    info = {
        "conll": str(conll),
        "eval_sentences": eval_sentences,
        "max_minutes": max_minutes,
        "ref": version.ref,
        "seconds": seconds,
    }
    return f"{version.name}@pii", info


def model_info(model: str) -> dict[str, Any]:
    """What the registry knows of the NER model scored: its version, when it was made, its CoNLL metrics."""
    try:
        version = Registry().get(model)
    except LeptonkitError as err:
        return {"ref": model, "registry": str(err)}
    return {
        "ref": version.ref,
        "created_at": version.created_at,
        "tags": version.tags,
        "metrics": version.metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=PARTS, required=True, help="dev: tune on it; test: report only")
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--pii-model", default="auto", help="NER model REF; 'auto' = the @pii version")
    parser.add_argument("--setup", type=Path, help="first build the model with pii-setup from this CoNLL folder")
    parser.add_argument("--max-minutes", type=float, default=None, help="training time bound for --setup (none)")
    parser.add_argument("--eval-sentences", type=int, default=500, help="valid/test sentences for --setup")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the figures of the README)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    every = load_spans_file(args.file)
    records = split_records(every, args.part, SPLIT_SEED)
    result: dict[str, Any] = {
        "file": str(args.file),
        "records_in_file": len(every),
        "part": args.part,
        "split": {"seed": SPLIT_SEED, "by": "template_id", "records": len(records)},
        "records": len(records),
    }
    if args.setup:
        model, result["setup"] = build_detector_model(
            args.setup, max_minutes=args.max_minutes, eval_sentences=args.eval_sentences
        )
    else:
        model = find_pii_model() if args.pii_model == "auto" else args.pii_model
    result["patterns_only"] = evaluate(records, PiiDetector(None, rules=False))
    result["default_no_model"] = evaluate(records, PiiDetector(None))  # patterns + word-list and context rules
    if model:
        result["model"] = model_info(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector = pii_detector(model)
        detector.detect("warm up the model")
        result["with_model"] = evaluate(records, detector)
        result["targets"] = targets(result["with_model"])
    else:
        result["with_model"] = {"skipped": "no @pii model: run with --setup CONLL_DIR, or `leptonkit data pii-setup`"}
        result["targets"] = targets(result["patterns_only"])
    try:
        start = time.perf_counter()
        presidio = PresidioDetector()
        result["presidio"] = evaluate(records, presidio) | {"load_seconds": round(time.perf_counter() - start, 1)}
    except (ImportError, OSError) as err:  # not installed, or no spaCy model
        result["presidio"] = {"skipped": f"presidio not usable here: {err}"}
    result["load_average_at_end"] = os.getloadavg()
    result["records_per_s_note"] = "measured beside other work; compare with the load averages"
    write_result("pii_eval", result, info)
    for name in ("patterns_only", "default_no_model", "with_model", "presidio"):
        overall = result[name].get("overall")
        print(name, json.dumps(overall) if overall else result[name], result[name].get("records_per_s", ""))
    print("targets", result["targets"])


if __name__ == "__main__":
    main()
