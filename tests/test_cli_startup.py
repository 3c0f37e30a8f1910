"""The CLI stays quick: listing commands or reading the registry must not import torch or transformers, and checking a
training recipe must not import transformers' modeling code."""

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


def test_a_recipe_is_checked_before_transformers_modeling_code_is_imported():
    """What ``finetune``, ``train`` and ``sft`` import to check a recipe (``leptonkit.train.api``) leaves out
    transformers' modeling code (seconds to import, with torchao and scipy behind it), so that bad input is refused in
    the time it takes to import torch."""
    probe = "import sys, leptonkit.train.api; print('transformers.modeling_utils' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False", "leptonkit.train.api imported transformers.modeling_utils: import it where a model is built"
