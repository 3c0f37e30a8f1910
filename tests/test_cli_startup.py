"""The CLI stays quick: listing commands or reading the registry must not import torch or transformers."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from typer.main import get_command
from leptonkit.cli.main import app
get_command(app)  # builds every command group, as `leptonkit --help` does
heavy = sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules)
print(",".join(heavy))
"""


def test_cli_start_up_imports_no_ml_library():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing the CLI pulled in {out}: import them inside the command functions"
