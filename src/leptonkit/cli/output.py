"""Printing helpers shared by every command: JSON for machines, rich tables for people."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_key_values(pairs: list[str], what: str = "tag") -> dict[str, str]:
    """``["k=v", ...]`` to a dict; a pair without ``=`` is a user error."""
    from leptonkit.errors import InvalidInputError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"invalid {what} {pair!r}", hint="write KEY=VALUE")
        out[key] = value
    return out
