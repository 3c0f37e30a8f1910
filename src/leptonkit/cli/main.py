"""The ``leptonkit`` entry point: verb groups, ``version`` and ``--version``, shell completion
(``--install-completion``, ``--show-completion``), and one-line errors with exit codes."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings

import typer

from leptonkit import __version__
from leptonkit.cli import bench as bench_cli
from leptonkit.cli import console as console_cli
from leptonkit.cli import data as data_cli
from leptonkit.cli import deploy as deploy_cli
from leptonkit.cli import explain as explain_cli
from leptonkit.cli import generate as generate_cli
from leptonkit.cli import keys as keys_cli
from leptonkit.cli import models
from leptonkit.cli import runs as runs_cli
from leptonkit.cli import serve as serve_cli
from leptonkit.cli import top as top_cli
from leptonkit.cli import train as train_cli
from leptonkit.cli.output import JSON_OPTION, print_json, print_table
from leptonkit.errors import LeptonkitError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# transformers' "Loading weights" bars would break one-line errors and --json pipes; read when transformers loads
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# an adapter's base loads without the task head the adapter carries: transformers' load report would alarm users
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# Deprecation notices that libraries give each other, printed by every command that loads a model, which a user
# can do nothing about: peft (0.21) asks transformers (5.x) for ``is_gradient_checkpointing``; prefix-tuned encoders
# pass ``past_key_values`` on purpose (leptonkit.registry.loading.expose_past_key_values).
LIBRARY_NOTICES = (r"`is_gradient_checkpointing` is deprecated", r"`past_key_values` is deprecated")
# The same kind of notice, logged: torchao (which peft imports whenever it is installed) cannot load its GPU kernels
# on a CPU, and registers an Enum with torch's pytree the deprecated way. Logger name -> message pattern.
LOGGED_NOTICES = {"torchao": r"Failed to load .*_C_", "torch.utils._pytree": r"register_constant\(\) on Enum"}


class _DropNotice(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


app = typer.Typer(
    name="leptonkit",
    help="leptonkit: data, training, registry and serving for language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"leptonkit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print leptonkit's version and exit."
    ),
) -> None:
    """Options before any command."""


app.add_typer(models.app, name="models")
app.add_typer(bench_cli.app, name="bench")
app.add_typer(data_cli.app, name="data")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(deploy_cli.app, name="deploy")
app.add_typer(runs_cli.app, name="runs")
app.command("explain")(explain_cli.explain)
app.command("serve")(serve_cli.serve)
app.command("console")(console_cli.console)
app.command("top")(top_cli.top)
app.command("train")(train_cli.train)
app.command("finetune")(train_cli.finetune)
app.command("eval")(train_cli.eval_)
app.command("predict")(train_cli.predict)
app.command("generate")(generate_cli.generate)
app.command("pretrain")(generate_cli.pretrain)


@app.command()
def version(json_out: bool = JSON_OPTION) -> None:
    """Print leptonkit, torch, transformers and peft versions and the device in use."""
    from leptonkit.versions import device_description, library_versions

    info = library_versions() | {"device": device_description()}
    if json_out:
        print_json(info)
    else:
        print_table(None, ["component", "version"], [[k, v] for k, v in info.items()])


def quiet_library_notices() -> None:
    """Hide LIBRARY_NOTICES and LOGGED_NOTICES in this process (before the libraries are imported)."""
    for notice in LIBRARY_NOTICES:
        warnings.filterwarnings("ignore", message=notice, category=FutureWarning)
    for name, pattern in LOGGED_NOTICES.items():
        logging.getLogger(name).addFilter(_DropNotice(pattern))


def main() -> None:
    """Run the CLI; a user error prints one line on stderr and exits with its code (2), never a traceback."""
    quiet_library_notices()
    try:
        app(prog_name="leptonkit")
    except LeptonkitError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
