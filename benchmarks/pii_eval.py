"""The PII detector on presidio-research's synthetic set; writes ``benchmarks/results/pii_eval.json``.

Scores the pattern-only detector, the full detector (patterns + the NER model aliased @pii, or --pii-model), and
Presidio's AnalyzerEngine where ``presidio_analyzer`` and a spaCy English model are installed (neither is a
leptonkit dependency: spaCy's models are not on PyPI). Targets from issue 4 are checked and reported.

    .venv/bin/python benchmarks/pii_eval.py [--file PATH] [--pii-model REF]
    .venv/bin/python benchmarks/pii_eval.py --setup ../shared/data/conll2003   # pii-setup (its defaults), then score
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

from leptonkit.privacy.evaluate import PATTERN_TYPES, TYPE_MAP, evaluate, load_spans_file
from leptonkit.privacy.pii import PiiDetector, PiiSpan, find_pii_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = ROOT.parent / "shared" / "data" / "pii" / "synth_dataset_v2.json"
RESULTS = ROOT / "benchmarks" / "results" / "pii_eval.json"
# Measured for issue 4 on this file and machine: Presidio 2.2 with spaCy en_core_web_sm (ORGANIZATION off).
PRESIDIO_REFERENCE = {
    "char_recall": 0.547,
    "char_recall_with_organization": 0.682,
    "span_f1": 0.49,
    "records_per_s": 150,
}


def targets(full: dict) -> dict[str, bool]:
    per_type = full["per_type"]
    return {
        "pattern_types_char_recall>=0.98": all(
            (per_type.get(t, {}).get("char_recall") or 0) >= 0.98 for t in PATTERN_TYPES if t in per_type
        ),
        "overall_char_recall>=0.90": full["overall"]["char_recall"] >= 0.90,
        "overall_char_precision>=0.85": full["overall"]["char_precision"] >= 0.85,
        "overall_span_f1>=0.80": full["overall"]["f1"] >= 0.80,
    }


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


def build_detector_model(
    conll: Path, *, max_minutes: float | None, eval_sentences: int, work: Path
) -> tuple[str, dict]:
    """Run pii-setup with its default training settings on CoNLL (all of train; valid/test cut to ``eval_sentences``
    so evaluation stays cheap on CPU); ``max_minutes`` only bounds the time when given."""
    from leptonkit.privacy.setup import setup_pii_model

    work.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        text = (conll / f"{split}.txt").read_text(encoding="utf-8")
        if split != "train":
            text = "\n\n".join(text.split("\n\n")[: eval_sentences + 1]) + "\n"
        (work / f"{split}.txt").write_text(text, encoding="utf-8")
    start = time.perf_counter()
    bound = {"max_minutes": max_minutes} if max_minutes else {}
    version = setup_pii_model(work, work_dir=work / "prepared", **bound)
    info = {"ref": version.ref, "metrics": version.metrics, "seconds": round(time.perf_counter() - start, 1)}
    return f"{version.name}@pii", info


def _ref_of(model: str) -> str | None:
    """The ``name:version`` a model reference (``pii-ner@pii``) stands for now, or None."""
    from leptonkit.errors import LeptonkitError
    from leptonkit.registry import Registry

    try:
        return Registry().get(model).ref
    except LeptonkitError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", default=str(DEFAULT_FILE))
    parser.add_argument("--pii-model", default="auto", help="NER model REF; 'auto' = the @pii version")
    parser.add_argument("--setup", type=Path, help="first build the model with pii-setup from this CoNLL folder")
    parser.add_argument("--max-minutes", type=float, default=None, help="training time bound for --setup (none)")
    parser.add_argument("--eval-sentences", type=int, default=500, help="valid/test sentences for --setup")
    args = parser.parse_args()
    records = load_spans_file(args.file)
    results: dict = {"file": args.file, "records": len(records)}
    results["patterns_only"] = evaluate(records, PiiDetector(None))
    model = find_pii_model() if args.pii_model == "auto" else args.pii_model
    if args.setup:
        with tempfile.TemporaryDirectory() as tmp:
            model, results["setup"] = build_detector_model(
                args.setup, max_minutes=args.max_minutes, eval_sentences=args.eval_sentences, work=Path(tmp)
            )
    elif model and RESULTS.is_file():  # scoring an existing model: keep how it was built, when that is known
        built = json.loads(RESULTS.read_text()).get("setup")
        if built and _ref_of(model) == built.get("ref"):
            results["setup"] = built | {"note": "from the earlier run that built this model with --setup"}
    if model:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector = PiiDetector(model)
        detector.detect("warm up the model")
        results["with_model"] = evaluate(records, detector)
        results["targets"] = targets(results["with_model"])
    else:
        results["with_model"] = {"skipped": "no @pii model: run `leptonkit data pii-setup --data CONLL_DIR` first"}
        results["targets"] = {
            "pattern_types_char_recall>=0.98": targets(results["patterns_only"])["pattern_types_char_recall>=0.98"]
        }
    try:
        start = time.perf_counter()
        presidio = PresidioDetector()
        results["presidio"] = evaluate(records, presidio) | {"load_seconds": round(time.perf_counter() - start, 1)}
    except (ImportError, OSError) as err:  # not installed, or no spaCy model
        results["presidio"] = {"skipped": f"presidio not usable here: {err}", "reference": PRESIDIO_REFERENCE}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for name in ("patterns_only", "with_model", "presidio"):
        overall = results[name].get("overall")
        print(name, json.dumps(overall) if overall else results[name], results[name].get("records_per_s", ""))
    print("targets", results["targets"])


if __name__ == "__main__":
    main()
