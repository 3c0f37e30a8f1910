"""The ``leptonkit`` entry point: verb groups, ``version``, and one-line errors with exit codes."""

from __future__ import annotations

import os
import sys

import typer

from leptonkit.cli import models
from leptonkit.cli.output import JSON_OPTION, print_json, print_table
from leptonkit.errors import LeptonkitError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = typer.Typer(
    name="leptonkit",
    help="leptonkit: data, training, registry and serving for language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models.app, name="models")


@app.command()
def version(json_out: bool = JSON_OPTION) -> None:
    """Print leptonkit, torch, transformers and peft versions and the device in use."""
    from leptonkit.versions import device_description, library_versions

    info = library_versions() | {"device": device_description()}
    if json_out:
        print_json(info)
    else:
        print_table(None, ["component", "version"], [[k, v] for k, v in info.items()])


def main() -> None:
    """Run the CLI; a user error prints one line on stderr and exits with its code (2), never a traceback."""
    try:
        app()
    except LeptonkitError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
