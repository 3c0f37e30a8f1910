"""Where the benchmarks find the shared data sets and write their results (imported by the ``*_common`` modules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED = REPO.parent / "shared" / "data"


def write_result(name: str, result: dict[str, Any]) -> Path:
    """``results/NAME.json``, pretty-printed; its path is printed and returned."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path
