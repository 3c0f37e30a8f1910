"""``leptonkit data ...``: prepare datasets, redact text, score and build the PII detector."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import typer

from leptonkit.cli.output import JSON_OPTION, console, print_json, print_table

app = typer.Typer(help="Prepare datasets and de-identify text.", no_args_is_help=True)

PII_MODEL_HELP = (
    "NER model for names/places/organisations (REF or folder); default: the version aliased @pii; "
    "'none': no model (patterns, and word lists with context rules for names and places)."
)


def _model_arg(value: str | None) -> str | None:
    return None if value and value.lower() == "none" else (value or "auto")


def _warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


@app.command()
def prepare(
    inputs: list[Path] = typer.Argument(..., help="Input files (jsonl, json, csv, tsv, conll, txt)."),
    task: str = typer.Option(..., "--task", help="classification, ner, sft or text."),
    out: Path = typer.Option(..., "--out", help="Output folder (train/valid/test.jsonl + manifest.json)."),
    fmt: str | None = typer.Option(None, "--format", help="Input format; default: from the extension."),
    text_col: str | None = typer.Option(
        None, "--text-col", help="Text column (csv/tsv/jsonl); with --no-header its index (default 0)."
    ),
    label_col: str | None = typer.Option(
        None, "--label-col", help="Label column (csv/tsv/jsonl); with --no-header its index (default 1)."
    ),
    tag_col: int = typer.Option(-1, "--tag-col", help="CoNLL tag column index (default: last)."),
    doc_unit: str = typer.Option("block", "--doc-unit", help="Plain text: one document per block, file or line."),
    quoting: bool | None = typer.Option(
        None, "--quoting/--no-quoting", help="CSV/TSV quote handling (default: on for csv, off for tsv)."
    ),
    no_header: bool = typer.Option(
        False, "--no-header", help="CSV/TSV without a header row: name columns by index (--text-col 0 --label-col 1)."
    ),
    encoding: str = typer.Option(
        "utf-8", "--encoding", help="Text encoding of the inputs (e.g. gbk); a file that does not decode is an error."
    ),
    t2s: bool = typer.Option(
        False, "--t2s", help="Convert Traditional Chinese to Simplified (OpenCC); labels are left as given."
    ),
    max_chars: int = typer.Option(20_000, "--max-chars", help="Drop records longer than this."),
    dedup: str = typer.Option("near", "--dedup", help="exact, near (MinHash LSH) or off."),
    near_threshold: float = typer.Option(0.8, "--near-threshold", help="Jaccard similarity for near duplicates."),
    split: str | None = typer.Option(None, "--split", help="train,valid,test fractions, e.g. 0.8,0.1,0.1."),
    seed: int = typer.Option(0, "--seed", help="Seed of the splits."),
    pii: str = typer.Option(
        "auto",
        "--pii",
        help="auto, mask, pseudonymize, drop or off. auto: mask, except ner data, which is pseudonymised (a labelled "
        "name becomes a realistic fake name, tags aligned) so the model still learns names.",
    ),
    pii_types: str = typer.Option(
        "direct",
        "--pii-types",
        help="What --pii replaces: 'direct' (default: emails, phones, card/ID/IBAN/SSN numbers, IPs, URLs, street "
        "addresses, person names), 'quasi' (dates, places, organisations: kept by default, as alone they identify "
        "nobody and are often what a model learns), 'all', or types, e.g. direct,LOCATION.",
    ),
    pii_model: str | None = typer.Option(None, "--pii-model", help=PII_MODEL_HELP),
    pii_key: str | None = typer.Option(None, "--pii-key", help="Key of the pseudonyms (same key, same fakes)."),
    on_error: str = typer.Option("fail", "--on-error", help="A malformed line: fail, or skip and count it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Read, clean, de-duplicate, de-identify and split raw files into a dataset folder with a manifest."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from leptonkit.data import prepare as run

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=json_out or not sys.stderr.isatty(),
    ) as bar:
        job = bar.add_task("reading", total=None)
        manifest = run(
            [str(p) for p in inputs],
            task=task,
            out=out,
            fmt=fmt,
            text_col=text_col,
            label_col=label_col,
            tag_col=tag_col,
            doc_unit=doc_unit,
            csv_quoting=quoting,
            header=not no_header,
            encoding=encoding,
            t2s=t2s,
            max_chars=max_chars,
            dedup=dedup,
            near_threshold=near_threshold,
            split=split,
            seed=seed,
            pii=pii,
            pii_types=pii_types,
            pii_model=_model_arg(pii_model),
            pii_key=pii_key,
            on_error=on_error,
            overwrite=overwrite,
            progress=lambda n: bar.update(job, description=f"{n:,} rows read"),
        )
    for message in manifest["warnings"]:
        _warn(message)
    if json_out:
        print_json(manifest)
        return
    rows = [
        [name, info["rows"], ", ".join(f"{k}={v}" for k, v in list(info["labels"].items())[:8])]
        for name, info in manifest["splits"].items()
    ]
    print_table(
        f"{out}  ({manifest['rows']['in']:,} rows in, {manifest['rows']['out']:,} out)",
        ["split", "rows", "labels"],
        rows,
    )
    if manifest["dropped"]:
        console.print("dropped: " + ", ".join(f"{k} {v:,}" for k, v in manifest["dropped"].items()))
    if manifest["pii"]["counts"]:
        console.print(
            f"PII ({manifest['pii']['mode']}): " + ", ".join(f"{k} {v:,}" for k, v in manifest["pii"]["counts"].items())
        )
    console.print(f"content hash {manifest['content_hash']}")


@app.command()
def redact(
    mode: str = typer.Option("mask", "--mode", help="mask ([EMAIL]) or pseudonymize (consistent fake values)."),
    pii_model: str | None = typer.Option(None, "--pii-model", help=PII_MODEL_HELP),
    pii_key: str | None = typer.Option(None, "--pii-key", help="Key of the pseudonyms."),
) -> None:
    """Redact PII in text read from stdin and write it to stdout, line by line (for shell pipelines)."""
    from leptonkit.privacy.pii import check_mode
    from leptonkit.registry.pii import pii_detector

    check_mode(mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = pii_detector(_model_arg(pii_model), key=pii_key)
    for warning in caught:
        _warn(str(warning.message))
    batch: list[str] = []

    def flush() -> None:
        for line in detector.redact_batch([b.rstrip("\n") for b in batch], mode):
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        batch.clear()

    for line in sys.stdin:
        batch.append(line)
        if len(batch) >= 64 or detector.model_ref is None:
            flush()
    flush()


@app.command("pii-eval")
def pii_eval(
    file: Path = typer.Argument(..., help="Span-labelled JSON (presidio-research synth_dataset_v2.json format)."),
    pii_model: str | None = typer.Option(None, "--pii-model", help=PII_MODEL_HELP),
    limit: int | None = typer.Option(None, "--limit", help="Score only the first N records."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Score the PII detector: precision, recall, F1 and character-level recall per type and overall."""
    from leptonkit.privacy.evaluate import evaluate, load_spans_file
    from leptonkit.registry.pii import pii_detector

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = pii_detector(_model_arg(pii_model))
    for warning in caught:
        _warn(str(warning.message))
    records = load_spans_file(file)
    result = evaluate(records[:limit] if limit else records, detector)
    if json_out:
        print_json(result)
        return
    console.print("type mapping (file -> detector): " + ", ".join(f"{k}->{v}" for k, v in result["type_map"].items()))
    if result["unscored"]:
        console.print("unscored (no detector type): " + ", ".join(f"{k} {v}" for k, v in result["unscored"].items()))
    columns = ["type", "precision", "recall", "f1", "char_recall", "char_precision", "support"]
    rows = [[name, *(m[c] for c in columns[1:])] for name, m in result["per_type"].items()]
    rows += [
        ["pattern types", *(result["pattern_types"][c] for c in columns[1:])],
        ["overall", *(result["overall"][c] for c in columns[1:])],
    ]
    print_table(
        f"{result['records']} records, {result['records_per_s']} records/s, model {result['model']}", columns, rows
    )


@app.command("pii-setup")
def pii_setup(
    data: Path | None = typer.Option(
        None, "--data", help="Folder of CoNLL train/valid/test files (or $LEPTONKIT_PII_DATA)."
    ),
    base: str = typer.Option("builtin:minilm", "--base", help="Encoder to fine-tune."),
    name: str = typer.Option("pii-ner", "--name", help="Registry name of the NER model."),
    limit: int | None = typer.Option(None, "--limit", help="Read at most N sentences per file (quick trials)."),
    epochs: float | None = typer.Option(None, "--epochs", help="Training epochs (default: the recipe's)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after N optimiser steps."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Training batch size."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Stop training after this many minutes."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Fine-tune the NER model for names, places and organisations and alias it @pii (one command, full detector)."""
    from leptonkit.train.pii_model import setup_pii_model

    overrides = {"epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "max_minutes": max_minutes}
    version = setup_pii_model(
        data, base=base, name=name, limit=limit, **{k: v for k, v in overrides.items() if v is not None}
    )
    if json_out:
        print_json(version.to_dict(detail=True))
        return
    metrics = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in version.metrics.items()
        if not isinstance(v, dict)
    )
    console.print(f"registered [bold]{version.ref}[/] as {version.name}@pii  {metrics}")
