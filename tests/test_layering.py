"""The layering of ``src/leptonkit`` (README, "Layers"): a module imports only from its own layer or below.

Every import counts, including those inside functions (``ast``, not the import system): a lazy import that climbs
a layer is still a dependency on the code above. ``from leptonkit import NAME`` counts as an import of the module
that exports ``NAME`` lazily.
"""

from __future__ import annotations

import ast
from pathlib import Path

import leptonkit

PACKAGE = Path(leptonkit.__file__).parent

# top-level module or package of leptonkit -> its layer; 0 is the package's own __init__ (version, lazy exports)
LAYERS = {
    "__init__": 0,
    **dict.fromkeys(("privacy", "monitor", "security", "errors", "config", "database", "versions", "client"), 1),
    **dict.fromkeys(("inference", "registry"), 2),
    **dict.fromkeys(("data", "explain", "robustness"), 3),
    "train": 4,
    "serve": 5,
    **dict.fromkeys(("deploy", "console", "bench", "sdk"), 6),
    "cli": 7,
}


def _top(module: str) -> str:
    """``leptonkit.train.loop`` -> ``train``; ``leptonkit`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def _from_package(name: str) -> str:
    if name in leptonkit._EXPORTS:
        return leptonkit._EXPORTS[name]
    is_module = (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()
    return f"leptonkit.{name}" if is_module else "leptonkit"


def _imported(node: ast.AST) -> list[str]:
    """The leptonkit modules an import statement reads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "leptonkit"]
    if not isinstance(node, ast.ImportFrom) or node.module is None or node.level:
        return []
    if node.module == "leptonkit":  # from leptonkit import X: a lazy export, a submodule, or __version__
        return [_from_package(alias.name) for alias in node.names]
    return [node.module] if node.module.split(".")[0] == "leptonkit" else []


def _imports() -> list[tuple[str, str]]:
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            edges += [(source, target) for target in _imported(node)]
    return edges


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = sorted({_top(module) for module, _ in _imports()} - set(LAYERS))
    assert unplaced == [], f"give these a layer in LAYERS and in the README: {unplaced}"


def test_the_import_parser_sees_function_level_and_lazy_imports() -> None:
    edges = set(_imports())
    assert ("leptonkit.cli.train", "leptonkit.cli.robustness") in edges  # imported inside eval_()
    assert ("leptonkit.cli.generate", "leptonkit.train.api") in edges


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = sorted(
        {(source, target) for source, target in _imports() if LAYERS.get(_top(target), 0) > LAYERS[_top(source)]}
    )
    assert upward == [], "imports from a layer above: " + "; ".join(f"{s} -> {t}" for s, t in upward)
