"""``prepare``: raw files in, a clean, de-duplicated, de-identified, split dataset folder with its manifest out.

Records stream through read -> clean -> de-duplicate -> PII -> split -> write, in batches (the NER model of the
PII detector is the one step that wants many records at once), so memory stays bounded by the batch and the
de-duplication digests, not by the input size. The output appears atomically: everything is written to a hidden
sibling folder that is renamed into place only when the run succeeded.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from leptonkit.data import manifest as manifest_io
from leptonkit.data.clean import KEPT_FULL_WIDTH, clean_record, t2s_converter
from leptonkit.data.dedup import Deduplicator
from leptonkit.data.deidentify import QUASI_TYPES, WHY, deidentify, parse_types, resolve_mode
from leptonkit.data.records import TASKS, ColumnError, Columns, record_texts, to_record
from leptonkit.data.sources import ReadOptions, RowError, csv_header, detect_format, read_rows
from leptonkit.data.split import SPLITS, StratifiedSplitter, parse_ratios, split_of_path
from leptonkit.errors import InvalidInputError

BATCH = 256
DEFAULT_SPLIT = "0.8,0.1,0.1"
ON_ERROR = ("fail", "skip")


@dataclass(frozen=True)
class Source:
    path: Path
    fmt: str
    split: str | None  # given split, or None when splits are made


def prepare(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    task: str,
    out: str | os.PathLike[str],
    fmt: str | None = None,
    text_col: str | int | None = None,
    label_col: str | int | None = None,
    tag_col: int = -1,
    doc_unit: str = "block",
    csv_quoting: bool | None = None,
    header: bool = True,
    encoding: str = "utf-8",
    t2s: bool = False,
    max_chars: int = 20_000,
    dedup: str = "near",
    near_threshold: float = 0.8,
    split: str | None = None,
    seed: int = 0,
    pii: str = "auto",
    pii_types: str | Sequence[str] | None = None,
    pii_model: str | None = "auto",
    pii_key: str | None = None,
    on_error: str = "fail",
    overwrite: bool = False,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Prepare a dataset folder (``train/valid/test.jsonl`` + ``manifest.json``) and return the manifest.

    Splits: inputs named train/valid/test (``dev`` counts as valid) keep their split unless ``split`` is given;
    otherwise deterministic ``split`` fractions (default 0.8,0.1,0.1), stratified by label for classification.
    ``limit`` reads at most that many rows of each input (quick trials). ``header=False`` reads csv/tsv files
    that have no header row: columns are then named by index (``text_col=0, label_col=1``, the defaults).
    ``encoding`` decodes the inputs (strictly: a file that does not decode is an error that names the fix).
    ``t2s`` converts Traditional Chinese text to Simplified (OpenCC; labels are left as given).
    ``pii``: ``auto`` masks, or pseudonymises NER data; ``pii_types`` (default ``direct``) names what is replaced:
    quasi-identifiers (dates, places, organisations) only when asked for (see :mod:`leptonkit.data.deidentify`).
    """
    if task not in TASKS:
        raise InvalidInputError(f"unknown task {task!r}", hint=f"use one of: {', '.join(TASKS)}")
    if on_error not in ON_ERROR:
        raise InvalidInputError(f"unknown --on-error {on_error!r}", hint="use fail or skip")
    if max_chars < 1:
        raise InvalidInputError(f"--max-chars must be positive, got {max_chars}")
    pii = resolve_mode(pii, task)
    types = parse_types(pii_types)
    read_options = ReadOptions(
        fmt=fmt, tag_col=tag_col, doc_unit=doc_unit, csv_quoting=csv_quoting, header=header, encoding=encoding
    )
    sources, ratios = _plan(inputs, fmt, split, task)
    text_col = None if text_col is None else str(text_col).strip()
    label_col = None if label_col is None else str(label_col).strip()
    if not header:
        text_col = "0" if text_col is None else text_col
        label_col = "1" if label_col is None and task == "classification" else label_col
    columns = Columns(text=text_col, label=label_col)
    for source in sources:
        _check_columns(source, task, columns, read_options)
    deduplicator = Deduplicator(dedup, threshold=near_threshold, seed=seed)
    convert = t2s_converter() if t2s else None
    splitter = StratifiedSplitter(ratios, seed) if ratios else None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = None
        if pii != "off":
            from leptonkit.registry.pii import pii_detector

            detector = pii_detector(pii_model, types=types, key=pii_key)
    target = Path(out).expanduser()
    staging = _staging(target, overwrite)
    stats = manifest_io.Stats()
    writers: dict[str, TextIO] = {}
    try:
        batch: list[tuple[dict, str | None]] = []

        def flush() -> None:
            records = [r for r, _ in batch]
            results = deidentify(records, detector, pii) if detector else None
            for k, (record, given) in enumerate(batch):
                if results is not None:
                    found = results[k]
                    stats.pii.update(found.counts)
                    stats.pii_records += bool(found.counts)
                    if found.record is None:
                        stats.drop("pii", "pii")
                        continue
                    record = found.record
                label = record.get("label") if task == "classification" else None
                name = given or splitter.assign(label or "")
                if name not in writers:
                    writers[name] = (staging / f"{name}.jsonl").open("w", encoding="utf-8")
                writers[name].write(json.dumps(record, ensure_ascii=False) + "\n")
                stats.written(name, record.get("tags") if task == "ner" else label)
            batch.clear()
            if progress:
                progress(stats.rows_in)

        for source in sources:
            rows_before = stats.rows_in
            for line, row in islice(read_rows(source.path, source.fmt, read_options), limit):
                stats.rows_in += 1
                try:
                    record = to_record(row, task, columns, line)
                except RowError as err:
                    where = f"{source.path}:{err.line}: {err}"
                    if isinstance(err, ColumnError) and stats.rows_in == rows_before + 1:
                        raise InvalidInputError(where, hint="check --text-col/--label-col and --task") from None
                    if on_error == "fail":
                        raise InvalidInputError(where, hint="fix the line, or pass --on-error skip") from None
                    stats.drop("read", "malformed")
                    stats.error(where)
                    continue
                cleaned = clean_record(record, task, max_chars, convert)
                if cleaned.record is None:
                    stats.drop("clean", cleaned.reason or "invalid")
                    continue
                stats.repaired_tags += cleaned.repaired
                verdict = deduplicator.check("\n".join(record_texts(cleaned.record)), source.split or "all")
                if verdict:
                    stats.drop("dedup", verdict)
                    continue
                batch.append((cleaned.record, source.split))
                if len(batch) >= BATCH:
                    flush()
            if stats.rows_in == rows_before:
                raise InvalidInputError(f"input {source.path} holds no records", hint="check the file and --format")
        flush()
        for handle in writers.values():
            handle.close()
        _check_result(task, stats, label_col)
        files = {f"{name}.jsonl": manifest_io.file_sha256(staging / f"{name}.jsonl") for name in writers}
        manifest = manifest_io.build(
            task=task,
            sources=[_describe(s) for s in sources],
            options={
                "format": fmt,
                "text_col": text_col,
                "label_col": label_col,
                "tag_col": tag_col,
                "doc_unit": doc_unit,
                "header": header,
                "encoding": encoding,
                "normalization": f"NFC; full-width forms to plain (kept: {KEPT_FULL_WIDTH})",
                "t2s": t2s,
                "max_chars": max_chars,
                "dedup": dedup,
                "near_threshold": near_threshold,
                "split": ",".join(map(str, ratios)) if ratios else "given",
                "seed": seed,
                "pii": pii,
                "on_error": on_error,
                "limit": limit,
            },
            stats=stats,
            files=files,
            pii={
                "mode": pii,
                "types": list(types) if detector else [],
                "kept": [t for t in QUASI_TYPES if t not in types] if detector else [],
                "why": _why(task, pii, types) if detector else "--pii off: nothing de-identified",
                "model": detector.model_ref if detector else None,
                "names_detected": bool(detector and detector.names_detected),
                "names_by": _names_by(detector),
                "key": None if pii != "pseudonymize" else ("given" if pii_key else "random"),
            },
        )
        manifest["warnings"] = [str(w.message) for w in caught]
        if task == "ner" and pii == "mask" and "PERSON" in types:
            manifest["warnings"].append(
                "--pii mask replaces labelled names in NER data with [PERSON] tokens, which a model cannot learn "
                "names from; --pii pseudonymize keeps them learnable (or --pii off for public data such as CoNLL)"
            )
        manifest_io.write(staging, manifest)
        _publish(staging, target)
    except BaseException:
        for handle in writers.values():
            handle.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _why(task: str, mode: str, types: Sequence[str]) -> list[str]:
    """Why these types and this mode: the manifest's record of the defaults that applied."""
    reasons = [WHY["direct"]]
    if any(t in types for t in QUASI_TYPES):
        reasons.append(f"quasi-identifiers asked for by --pii-types: {', '.join(t for t in QUASI_TYPES if t in types)}")
    else:
        reasons.append(WHY["quasi"])
    if task == "ner" and mode == "pseudonymize":
        reasons.append(WHY["ner"])
    return reasons


def _names_by(detector: Any) -> str | None:
    if detector is None or "PERSON" not in detector.types:
        return None
    if detector.model_ref:
        return f"NER model {detector.model_ref} (Latin script) and word lists with context rules (Chinese)"
    return "word lists and context rules (common names; no NER model: see `leptonkit data pii-setup`)"


def _plan(
    inputs: Sequence[str | os.PathLike[str]], fmt: str | None, split: str | None, task: str
) -> tuple[list[Source], tuple[float, float, float] | None]:
    """Inputs in split order (train first, so cross-split duplicates leave the evaluation splits) and the ratios."""
    if not inputs:
        raise InvalidInputError("no input files", hint="pass one or more INPUT files")
    paths = [Path(p).expanduser() for p in inputs]
    for path in paths:
        if not path.is_file():
            raise InvalidInputError(f"input file {path} not found", hint="check the path")
    named = [split_of_path(p) for p in paths]
    ratios = parse_ratios(split) if split else None
    given = ratios is None and len(paths) > 1 and all(named)
    if ratios is None and not given:
        if len(paths) > 1 and any(named):
            unnamed = [str(p) for p, n in zip(paths, named, strict=True) if not n]
            raise InvalidInputError(
                f"cannot tell the split of {', '.join(unnamed)}",
                hint="name every input train/valid/test, or pass --split to pool and split them",
            )
        ratios = parse_ratios(DEFAULT_SPLIT)
    sources = [
        Source(path, detect_format(path, fmt, task), name if given else None)
        for path, name in zip(paths, named, strict=True)
    ]
    if given:
        sources.sort(key=lambda s: SPLITS.index(s.split))
    return sources, ratios


def _check_columns(source: Source, task: str, columns: Columns, options: ReadOptions) -> None:
    """An unknown ``--text-col``/``--label-col`` of a csv/tsv file is one clear error before any work."""
    if source.fmt not in ("csv", "tsv") or task == "ner":
        return
    header = csv_header(source.path, source.fmt, options)
    for what, name in (("text", columns.text), ("label", columns.label)):
        if name is None or name in header:
            continue
        if not options.header:
            raise InvalidInputError(
                f"{source.path}: no column {name!r} for --{what}-col; a file read with --no-header has "
                f"{len(header)} column(s)",
                hint=f"name a column by its index, 0 to {len(header) - 1}" if header else "check the file",
            )
        raise InvalidInputError(
            f"{source.path}: no column {name!r} for --{what}-col", hint=f"columns: {', '.join(header) or 'none'}"
        )


def _check_result(task: str, stats: manifest_io.Stats, label_col: str | None) -> None:
    total = sum(stats.rows_out.values())
    if total == 0:
        reasons = {r: n for step in stats.steps.values() for r, n in step.items()}
        raise InvalidInputError(
            f"no records left out of {stats.rows_in} ({', '.join(f'{r}: {n}' for r, n in reasons.items())})",
            hint="see the reasons; --on-error skip, --max-chars or --dedup off may help",
        )
    if task == "classification":
        classes = set().union(*(counter.keys() for counter in stats.labels.values()))
        if len(classes) < 2:
            raise InvalidInputError(
                f"the label column {label_col or 'label'!r} has one class ({', '.join(map(repr, classes))}) "
                f"in {total} records",
                hint="a classifier needs at least two classes; check --label-col",
            )


def _describe(source: Source) -> dict[str, Any]:
    return {
        "path": str(source.path.resolve()),
        "format": source.fmt,
        "split": source.split,
        "bytes": source.path.stat().st_size,
        "sha256": manifest_io.file_sha256(source.path),
    }


def _staging(target: Path, overwrite: bool) -> Path:
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"--out {target} is a file", hint="name a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise InvalidInputError(f"output folder {target} is not empty", hint="pass --overwrite or name a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def _publish(staging: Path, target: Path) -> None:
    """Swap the finished folder into place; an old folder is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
