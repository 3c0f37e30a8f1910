"""``leptonkit explain``: why a classification or NER model decided what it did, word by word."""

from __future__ import annotations

from pathlib import Path

import typer

from leptonkit.cli.output import JSON_OPTION, console, print_json
from leptonkit.explain.checks import DEFAULT_STEPS, check_text


def explain(
    ref: str = typer.Argument(..., help="Model reference (NAME, NAME:VERSION, NAME@ALIAS) or a model folder."),
    text: str = typer.Argument(..., help="The text to explain."),
    label: str | None = typer.Option(
        None, "--label", help="Explain this label (an entity type for NER) instead of the prediction."
    ),
    method: str = typer.Option("ig", "--method", help="ig (integrated gradients) or gxi (gradient x input, faster)."),
    steps: int = typer.Option(DEFAULT_STEPS, "--steps", help="Integration steps for ig."),
    html_file: Path | None = typer.Option(None, "--html", help="Also write a self-contained HTML page here."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Word attributions for a prediction: green words push towards it, red words against it."""
    check_text(text)
    from leptonkit.explain.explainer import explain as run_explain
    from leptonkit.explain.render import html_page, terminal_text
    from leptonkit.registry.loading import load_model

    result = run_explain(load_model(ref), text, label=label, method=method, steps=steps)
    if html_file is not None:
        html_file.write_text(html_page(text, result, title=f"{ref}: explanation"), encoding="utf-8")
    if json_out:
        print_json(result)
        return
    for line in terminal_text(text, result):
        console.print(line)
    if html_file is not None:
        console.print(f"wrote {html_file}")
