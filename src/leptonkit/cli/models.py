"""``leptonkit models ...``: the registry from the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from leptonkit.cli.output import JSON_OPTION, console, human_size, parse_key_values, print_json, print_table
from leptonkit.errors import IntegrityError
from leptonkit.registry import ModelVersion, Registry

app = typer.Typer(help="Register, find, promote and verify model versions.", no_args_is_help=True)


@app.command("import")
def import_(
    source: str = typer.Argument(
        ...,
        help="A Hugging Face format folder, a PEFT adapter folder, a .gguf file, builtin:minilm or builtin:smollm2.",
    ),
    name: str = typer.Option(..., "--name", help="Registry name; versions auto-increment from 1."),
    task: str | None = typer.Option(None, "--task", help="classification, ner, generation, embedding, fill-mask."),
    base: str | None = typer.Option(None, "--base", help="Base model reference, required for an adapter."),
    tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE, repeatable."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Import a model or adapter as a new version."""
    version = Registry().register(source, name=name, task=task, base=base, tags=parse_key_values(tag))
    if json_out:
        print_json(version.to_dict(detail=True))
    else:
        console.print(f"registered [bold]{version.ref}[/] ({version.kind}, task {version.task}) at {version.path}")


@app.command()
def quantize(
    ref: str = typer.Argument(..., help="The version to quantise (NAME, NAME:VERSION, NAME@ALIAS)."),
    method: str = typer.Option(
        ..., "--method", help="int8 (weight-only), int4 (CPU, groups of 32), w8a8 (int8 weights and activations), fp8."
    ),
    name: str | None = typer.Option(None, "--name", help="Registry name of the result (default: NAME-METHOD)."),
    data: str | None = typer.Option(
        None, "--data", help="Measure source and result: held-out text (causal LM) or a classification dataset."
    ),
    split: str = typer.Option("test", "--split", help="With a dataset: the split to measure on."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Quantise a model's weights with torchao into a new version; lineage records source, method and measurements."""
    from leptonkit.train.quantize import quantize as run_quantize

    version = run_quantize(ref, method=method, name=name, data=data, split=split)
    if json_out:
        print_json(version.to_dict(detail=True))
        return
    measured = version.lineage["measured"]
    console.print(f"registered [bold]{version.ref}[/] ({method} of {version.lineage['quantized_from']})")
    console.print(f"weights: {human_size(measured['source_size_bytes'])} -> {human_size(measured['size_bytes'])}")
    if "metric" in measured:
        console.print(
            f"{measured['metric']} on {measured['data']}: {measured['source']:.4f} -> {measured['quantized']:.4f}"
            f" ({measured['change']:+.4f})"
        )


@app.command("list")
def list_(
    name: str | None = typer.Argument(None, help="Only versions of this name."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List registered versions."""
    versions = Registry().list(name)
    if json_out:
        print_json([v.to_dict() for v in versions])
        return
    rows = [
        [v.ref, v.kind, v.task, ",".join(v.aliases), _params(v.parameters), v.created_at, v.base or ""]
        for v in versions
    ]
    print_table(None, ["ref", "kind", "task", "aliases", "params", "created", "base"], rows)


@app.command()
def show(ref: str, json_out: bool = JSON_OPTION) -> None:
    """Everything known about one version: files, metrics, lineage, tags, aliases."""
    version = Registry().get(ref)
    if json_out:
        print_json(version.to_dict(detail=True))
        return
    _print_version(version)


@app.command()
def alias(ref: str, alias: str, json_out: bool = JSON_OPTION) -> None:
    """Point NAME@ALIAS at REF; moving an alias promotes or rolls back a deployment."""
    version = Registry().alias(ref, alias)
    if json_out:
        print_json(version.to_dict())
    else:
        console.print(f"{version.name}@{alias} -> {version.ref}")


@app.command()
def tag(ref: str, pairs: list[str] = typer.Argument(..., help="KEY=VALUE ..."), json_out: bool = JSON_OPTION) -> None:
    """Set tags on a version."""
    version = Registry().tag(ref, parse_key_values(pairs))
    if json_out:
        print_json(version.to_dict(detail=True))
    else:
        console.print(f"{version.ref} tags: {version.tags}")


@app.command()
def verify(ref: str, json_out: bool = JSON_OPTION) -> None:
    """Recompute file hashes; exit 1 naming each damaged file."""
    registry = Registry()
    version = registry.get(ref)
    damaged = registry.verify(ref)
    if json_out:
        print_json({"ref": version.ref, "ok": not damaged, "damaged": damaged})
        if damaged:
            raise typer.Exit(1)
        return
    if damaged:
        raise IntegrityError(f"{version.ref} is damaged: {'; '.join(damaged)}", damaged=damaged)
    console.print(f"{version.ref}: {len(version.files)} files verified")


@app.command()
def export(ref: str, dest: Path, json_out: bool = JSON_OPTION) -> None:
    """Copy a version to a plain Hugging Face folder, loadable with transformers alone."""
    path = Registry().export(ref, dest)
    if json_out:
        print_json({"ref": ref, "path": str(path)})
    else:
        console.print(f"exported {ref} to {path}")


@app.command("rm")
def remove(
    ref: str,
    force: bool = typer.Option(False, "--force", help="Remove even while aliases or adapters point at it."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Remove a version (refused while an alias points at it, unless --force)."""
    version = Registry().remove(ref, force=force)
    if json_out:
        print_json({"removed": version.ref})
    else:
        console.print(f"removed {version.ref}")


@app.command()
def resolve(ref: str) -> None:
    """Print the folder of a version."""
    typer.echo(str(Registry().resolve(ref)))


def _params(count: int | None) -> str:
    if count is None:
        return ""
    return f"{count / 1e6:.1f}M" if count >= 1e5 else str(count)


def _print_version(v: ModelVersion) -> None:
    console.print(f"[bold]{v.ref}[/]  kind={v.kind}  task={v.task}  params={_params(v.parameters)}")
    console.print(f"created {v.created_at}  path {v.path}")
    console.print(f"aliases: {', '.join(v.aliases) or '-'}   tags: {v.tags or '-'}")
    console.print(f"metrics: {v.metrics or '-'}")
    console.print(f"lineage: {v.lineage or '-'}")
    console.print(f"libraries: {v.libraries}")
    print_table(
        "files", ["path", "size", "sha256"], [[f["path"], human_size(f["size"]), f["sha256"][:16]] for f in v.files]
    )
