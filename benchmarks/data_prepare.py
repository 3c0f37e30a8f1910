"""Throughput and memory of ``leptonkit data prepare``; writes ``benchmarks/results/data_prepare.json``.

Runs (each in its own process, so peak memory is that run's alone):
1. all of SST-2 train (67k rows), pattern PII on, near-dedup on: target < 60 s and < 1 GB peak;
2. with the NER model for names as well (``--pii-model``, default the @pii version, skipped when there is none):
   rows/s on the first N rows;
3. a synthetic 1,000,000-row jsonl (Faker-made support tickets with PII): completes, peak memory reported.

    .venv/bin/python benchmarks/data_prepare.py [--rows 1000000] [--ner-rows 2000] [--skip-synthetic]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import machine, write_result

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

RUN = """
import json, sys, warnings
warnings.simplefilter("ignore")
from leptonkit.data import prepare
kwargs = json.loads(sys.argv[1])
manifest = prepare(**kwargs)
print(json.dumps({"rows": manifest["rows"], "dropped": manifest["dropped"], "pii": manifest["pii"]}))
"""


def run_prepare(**kwargs) -> dict:
    """Run ``prepare`` in a fresh process; wall seconds, peak RSS (MB) and its summary."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RUN, json.dumps(kwargs, default=str)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary | {
        "seconds": round(seconds, 2),
        "rows_per_s": round(summary["rows"]["in"] / seconds, 1),
        "peak_rss_mb": round(max(peak, before) / 1024, 1),  # ru_maxrss is KB on Linux; max over children so far
    }


def synthetic_jsonl(path: Path, rows: int) -> None:
    """Support tickets: 1 in 5 with an email/phone/name, written streaming (a pool of Faker values, re-combined)."""
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(0)
    rng = random.Random(0)
    names = [fake.name() for _ in range(2000)]
    emails = [fake.email() for _ in range(2000)]
    phones = [fake.phone_number() for _ in range(2000)]
    words = sorted({fake.word() for _ in range(5000)} | {fake.last_name().lower() for _ in range(2000)})
    with path.open("w") as f:
        for i in range(rows):
            text = " ".join(rng.choices(words, k=rng.randint(8, 30)))
            if i % 5 == 0:
                text += f". contact {rng.choice(names)} at {rng.choice(emails)} or {rng.choice(phones)}"
            f.write(json.dumps({"text": text, "label": "ab"[i % 2]}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ner-rows", type=int, default=2000)
    parser.add_argument("--pii-model", default="auto", help="REF, 'auto' (the @pii version) or 'none' (skip that run)")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    info, results = machine(), {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sst2 = dict(
            inputs=[str(SHARED / "sst2" / "train.tsv")],
            task="classification",
            text_col="sentence",
            dedup="near",
            pii="mask",
            pii_model=None,
        )
        results["sst2_patterns_near_dedup"] = run_prepare(**sst2, out=str(tmp_path / "sst2"))
        results["sst2_patterns_near_dedup"]["targets"] = {
            "seconds<60": results["sst2_patterns_near_dedup"]["seconds"] < 60,
            "peak_rss_mb<1024": results["sst2_patterns_near_dedup"]["peak_rss_mb"] < 1024,
        }
        print(json.dumps(results, indent=2), flush=True)
        from leptonkit.registry.pii import find_pii_model

        model = find_pii_model() if args.pii_model == "auto" else args.pii_model
        if args.pii_model == "none":
            pass
        elif model:
            results["sst2_with_ner_model"] = run_prepare(
                **{**sst2, "pii_model": model, "limit": args.ner_rows}, out=str(tmp_path / "sst2-ner")
            ) | {"model": model}
        else:
            results["sst2_with_ner_model"] = {"skipped": "no @pii model: run `leptonkit data pii-setup` first"}
        print(json.dumps(results, indent=2), flush=True)
        if not args.skip_synthetic:
            path = tmp_path / "synthetic.jsonl"
            synthetic_jsonl(path, args.rows)
            results["synthetic"] = run_prepare(
                inputs=[str(path)],
                task="classification",
                dedup="near",
                pii="mask",
                pii_model=None,
                out=str(tmp_path / "synthetic"),
            ) | {"input_mb": round(path.stat().st_size / 2**20, 1)}
    write_result("data_prepare", results, info)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
