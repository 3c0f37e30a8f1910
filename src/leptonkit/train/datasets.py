"""Training data: a prepared folder (the data contract), or raw files prepared on the fly by ``leptonkit.data``.

A prepared folder holds ``train/valid/test.jsonl`` and ``manifest.json``. Anything else given as ``--data`` (a raw
file, or a folder of raw files named train/dev/test) goes through :func:`leptonkit.data.prepare` first, into the run
folder, so that training always reads the same validated, de-duplicated records and knows their content hash.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leptonkit.errors import InvalidInputError, NotFoundError

MANIFEST = "manifest.json"
SPLITS = ("train", "valid", "test")
# the record shape of each task of the data contract, to tell a mismatching dataset in one line
SHAPES = {"classification": ("text", "label"), "ner": ("tokens", "tags"), "sft": ("messages",), "text": ("text",)}


@dataclass
class Dataset:
    folder: Path
    manifest: dict[str, Any]
    splits: dict[str, list[dict]]

    @property
    def content_hash(self) -> str | None:
        return self.manifest.get("content_hash")


def resolve(data: str | Path, task: str, work_dir: Path) -> Path:
    """The prepared folder for ``data``; raw inputs are prepared into ``work_dir/data`` first."""
    path = Path(data).expanduser()
    if not path.exists():
        raise NotFoundError(
            f"data {path} not found", hint="give a prepared folder or a raw file (jsonl, csv, tsv, conll)"
        )
    if path.is_dir() and (path / MANIFEST).is_file():
        return path
    inputs = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and _is_data_file(p))
    if not inputs:
        raise InvalidInputError(f"{path} holds no data files", hint="give a prepared folder or raw data files")
    from leptonkit.data import prepare

    out = work_dir / "data"
    # NER learns the very names PII masking would replace, so its data is not masked; other tasks are
    prepare(
        [str(p) for p in inputs], task=task, out=str(out), overwrite=True, **({"pii": "off"} if task == "ner" else {})
    )
    return out


def _is_data_file(path: Path) -> bool:
    return not path.name.startswith(".") and not path.name.lower().startswith("readme")


def load(folder: Path, task: str, *, need: tuple[str, ...] = ("train",)) -> Dataset:
    """Read every split present; check that the records have the shape of ``task`` and that ``need`` is present."""
    manifest = json.loads((folder / MANIFEST).read_text()) if (folder / MANIFEST).is_file() else {}
    splits = {}
    for name in SPLITS:
        file = folder / f"{name}.jsonl"
        if file.is_file():
            # JSON lines end at "\n" alone: splitlines would also cut at U+0085 or U+2028 inside a string
            splits[name] = [json.loads(line) for line in file.read_text(encoding="utf-8").split("\n") if line.strip()]
    for name in need:
        if not splits.get(name):
            found = ", ".join(f"{k} ({len(v)} rows)" for k, v in splits.items()) or "none"
            raise InvalidInputError(
                f"{folder} has no {name} rows (splits found: {found})",
                hint="prepare more data, or give a split with rows for training and validation",
            )
    for name, records in splits.items():
        check_shape(records, task, f"{folder / name}.jsonl")
    return Dataset(folder, manifest, splits)


def check_shape(records: list[dict], task: str, where: str) -> None:
    """One clear line when a dataset does not fit the task (``--task ner`` on sentences, and so on)."""
    if not records:
        return
    keys = SHAPES[task]
    first = records[0]
    if all(k in first for k in keys):
        return
    looks_like = next((t for t, ks in SHAPES.items() if all(k in first for k in ks)), None)
    shape = f"looks like {looks_like} data" if looks_like else f"has keys {sorted(first)}"
    raise InvalidInputError(
        f"{where} does not match task {task!r}: its records need {' and '.join(map(repr, keys))}, this one {shape}",
        hint=f"use --task {looks_like}"
        if looks_like in ("classification", "ner")
        else f"prepare it with --task {task}",
        param="data",
    )


def labels_of(dataset: Dataset, task: str) -> list[str]:
    """Label names seen in the data, sorted; for NER the IOB2 tags, ``O`` first."""
    counts: Counter[str] = Counter()
    for records in dataset.splits.values():
        for record in records:
            counts.update(record["tags"] if task == "ner" else [str(record["label"])])
    if task == "ner":
        return ["O", *sorted(t for t in counts if t != "O")]
    if len(counts) < 2:
        raise InvalidInputError(
            f"{dataset.folder} has a single label {next(iter(counts), '')!r}", hint="a classifier needs two or more"
        )
    return sorted(counts)
