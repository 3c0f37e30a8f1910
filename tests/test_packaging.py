"""Dependencies as pyproject.toml declares them: a light base, one extra per part, nothing declared and unused.

- ``from leptonkit import Client`` (and building the CLI) loads no torch and only libraries of the base
  dependencies and what they require;
- every third-party import in ``src/``, ``tests/`` and ``benchmarks/`` comes from a declared dependency (or is listed
  in ``OPTIONAL_IMPORTS``), and every declared dependency is imported somewhere (or is in ``USED_WITHOUT_IMPORT``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, metadata, packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

# declared, but reached through another library rather than imported by name
USED_WITHOUT_IMPORT = {
    "tensorboard": "torch.utils.tensorboard writes the training curves through it",
    "accelerate": "the Hugging Face Trainer (benchmarks/train_throughput.py's baseline) requires it",
    "pytest-timeout": "a pytest plugin (timeout in pyproject.toml)",
    "ruff": "a command (make lint)",
}
# imported where installed, never required
OPTIONAL_IMPORTS = {"presidio_analyzer": "benchmarks/pii_eval.py compares with Presidio where it is installed"}


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements if not r.startswith("leptonkit[")}


def _closure(names: set[str]) -> set[str]:
    """``names`` and every distribution they require, recursively (as installed here)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            needed = requires(name) or []
        except PackageNotFoundError:
            continue
        for line in needed:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def _optional(names: set[str]) -> set[str]:
    """The optional requirements (extras) of ``names`` themselves: what a library imports when it finds it installed,
    as httpx does with click."""
    out = set()
    for name in names:
        extras = metadata(name).get_all("Provides-Extra") or []
        for line in requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is not None and any(requirement.marker.evaluate({"extra": e}) for e in extras):
                out.add(canonicalize_name(requirement.name))
    return out


PROBE = """
import json, sys
at_start = set(sys.modules)
from leptonkit import Client
from typer.main import get_command
from leptonkit.cli.main import app
get_command(app)
print(json.dumps(sorted({name.split(".")[0] for name in set(sys.modules) - at_start})))
"""


def test_client_imports_without_torch() -> None:
    code = "import sys; from leptonkit import Client; assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_client_and_cli_load_only_base_dependencies() -> None:
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    loaded = json.loads(probe.stdout)
    assert "typer" in loaded and "httpx" in loaded  # the probe sees what it loads
    base = _names(PROJECT["dependencies"])
    allowed = _closure(base | _optional(base)) | {"leptonkit"}
    owners = packages_distributions()
    outside = {
        module: owners[module]
        for module in loaded
        if module in owners and not {canonicalize_name(d) for d in owners[module]} & allowed
    }
    assert outside == {}, f"importing the Client and the CLI loads libraries outside the base dependencies: {outside}"


def _third_party_imports(folder: Path) -> set[str]:
    modules = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    local = {p.stem for p in folder.glob("*.py")} | {"leptonkit", "tests", "benchmarks"}  # scripts import siblings
    return {m for m in modules if m not in sys.stdlib_module_names and m not in local}


def test_every_import_is_declared_and_every_declared_dependency_is_used() -> None:
    declared = _names(PROJECT["dependencies"])
    for extra in PROJECT["optional-dependencies"].values():
        declared |= _names(extra)
    owners = packages_distributions()
    imported = set().union(*(_third_party_imports(REPO / folder) for folder in ("src", "tests", "benchmarks")))
    imported_dists = {canonicalize_name(d) for m in imported for d in owners.get(m, [m])}
    available = _closure(declared)
    undeclared = sorted(
        m
        for m in imported
        if m not in OPTIONAL_IMPORTS and not {canonicalize_name(d) for d in owners.get(m, [m])} & available
    )
    assert undeclared == [], f"imported but not declared in pyproject.toml: {undeclared}"
    unused = sorted(declared - imported_dists - {canonicalize_name(n) for n in USED_WITHOUT_IMPORT})
    assert unused == [], f"declared in pyproject.toml but imported nowhere: {unused}"
