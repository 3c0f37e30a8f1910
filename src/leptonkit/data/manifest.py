"""The manifest of a prepared dataset: what went in, what came out, why every dropped row was dropped.

``content_hash`` depends only on the records written (never on times or paths), so training can pin a dataset
in the registry's lineage and a re-run with the same inputs and options reproduces it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
MAX_ERROR_EXAMPLES = 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(file_hashes: dict[str, str]) -> str:
    """One sha256 over the split files' names and hashes, in name order."""
    joined = "".join(f"{name}:{sha}\n" for name, sha in sorted(file_hashes.items()))
    return hashlib.sha256(joined.encode()).hexdigest()


class Stats:
    """Counters filled while records stream through the steps."""

    def __init__(self) -> None:
        self.rows_in = 0
        self.steps: dict[str, Counter[str]] = {step: Counter() for step in ("read", "clean", "dedup", "pii")}
        self.kept: Counter[str] = Counter()  # rows out of each step
        self.repaired_tags = 0
        self.errors: list[str] = []
        self.pii: Counter[str] = Counter()
        self.pii_records = 0
        self.labels: dict[str, Counter[str]] = {}
        self.rows_out: Counter[str] = Counter()

    def drop(self, step: str, reason: str) -> None:
        self.steps[step][reason] += 1

    def error(self, where: str) -> None:
        if len(self.errors) < MAX_ERROR_EXAMPLES:
            self.errors.append(where)

    def written(self, split: str, label: str | list[str] | None) -> None:
        self.rows_out[split] += 1
        counter = self.labels.setdefault(split, Counter())
        if isinstance(label, list):  # ner: entity types, counted per entity (B- tags)
            counter.update(tag[2:] for tag in label if tag.startswith("B-"))
        elif label is not None:
            counter[label] += 1


def build(
    *,
    task: str,
    sources: list[dict[str, Any]],
    options: dict[str, Any],
    stats: Stats,
    files: dict[str, str],
    pii: dict[str, Any],
) -> dict[str, Any]:
    from leptonkit import __version__

    dropped: Counter[str] = Counter()
    steps = {}
    remaining = stats.rows_in
    for step, reasons in stats.steps.items():
        dropped.update(reasons)
        out = remaining - sum(reasons.values())
        steps[step] = {"in": remaining, "out": out, "dropped": dict(reasons)}
        remaining = out
    return {
        "format_version": FORMAT_VERSION,
        "task": task,
        "leptonkit_version": __version__,
        "sources": sources,
        "options": options,
        "seed": options.get("seed"),
        "rows": {"in": stats.rows_in, "out": sum(stats.rows_out.values())},
        "steps": steps,
        "dropped": dict(dropped),
        "errors": stats.errors,
        "repaired": {"iob2_tags": stats.repaired_tags},
        "splits": {
            split: {"rows": stats.rows_out[split], "labels": dict(sorted(stats.labels.get(split, Counter()).items()))}
            for split in sorted(stats.rows_out, key=["train", "valid", "test"].index)
        },
        "pii": pii | {"counts": dict(sorted(stats.pii.items())), "records_with_pii": stats.pii_records},
        "files": files,
        "content_hash": content_hash(files),
    }


def write(folder: Path, manifest: dict[str, Any]) -> None:
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, folder / MANIFEST)


def read(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text())
