"""Options of the ``leptonkit`` command itself: ``--version`` and shell completion."""

from __future__ import annotations

import os
import subprocess

from leptonkit import __version__
from tests.conftest import LEPTONKIT


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LEPTONKIT, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, env=env
    )


def test_version_prints_the_package_version_and_exits_0() -> None:
    done = _run("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"leptonkit {__version__}\n", "")


def test_completion_scripts_for_bash_and_zsh_name_the_leptonkit_command() -> None:
    # typer's own switch: --show-completion takes the shell's name instead of detecting the parent shell
    env = os.environ | {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    for shell, marker in (
        ("bash", "complete -o default -F _leptonkit_completion leptonkit"),
        ("zsh", "#compdef leptonkit"),
    ):
        done = _run("--show-completion", shell, env=env)
        assert done.returncode == 0, done.stderr
        assert marker in done.stdout and "_LEPTONKIT_COMPLETE" in done.stdout
