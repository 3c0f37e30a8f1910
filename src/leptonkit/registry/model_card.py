"""What an exported version carries beyond its weights: a base named portably and a model card.

A registered adapter's ``adapter_config.json`` names its base by the local folder it was trained from (what PEFT's
``save_pretrained`` writes), which means nothing on another machine. On export the base is renamed to its hub id
when known (a built-in base: ``sentence-transformers/all-MiniLM-L6-v2``), else to its pinned registry reference
(``minilm:1``), else, for a base given as a folder, to that folder's name. ``README.md`` is a model card in the
Hugging Face format (YAML front matter, then Markdown): the base, the task, the lineage and the metrics. A full model
keeps a card it already has (the built-in MiniLM's upstream card, with its license); an adapter's card, PEFT's empty
template, is replaced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leptonkit.registry.artifacts import ADAPTER_CONFIG

CARD = "README.md"
# Hugging Face pipeline tags by leptonkit task
PIPELINE_TAGS = {
    "classification": "text-classification",
    "ner": "token-classification",
    "generation": "text-generation",
    "embedding": "feature-extraction",
    "fill-mask": "fill-mask",
}


def rename_base(folder: Path, base: str) -> None:
    """Point ``adapter_config.json`` in ``folder`` at ``base``."""
    path = folder / ADAPTER_CONFIG
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base
    path.write_text(json.dumps(config, indent=2) + "\n")


def model_card(version: Any, base: str | None) -> str:
    """The card of ``version`` (a :class:`~leptonkit.registry.store.ModelVersion`); ``base``: an adapter's base as the
    export names it."""
    front = ["---", "library_name: " + ("peft" if version.kind == "adapter" else "transformers")]
    if base:
        front.append(f"base_model: {base}")
    if version.task in PIPELINE_TAGS:
        front.append(f"pipeline_tag: {PIPELINE_TAGS[version.task]}")
    method = version.lineage.get("recipe", {}).get("method")
    front += ["tags:", "- leptonkit", *([f"- {method}"] if method else []), "---", ""]
    what = f"A {method} adapter" if version.kind == "adapter" and method else f"A {version.kind}"
    task = version.task or "no declared task"
    body = [f"# {version.ref}", "", f"{what} for {task}, exported from a leptonkit registry."]
    if base:
        registered = f" (registry: `{version.base}`)" if version.base != base else ""
        body += ["", f"Base model: `{base}`{registered}."]
    body += ["", "## Metrics", "", *_metric_table(version.metrics), "", "## Lineage", ""]
    body += ["```json", json.dumps(version.lineage, indent=2, sort_keys=True, default=str), "```", ""]
    body += ["## Libraries", "", *[f"- {name} {value}" for name, value in version.libraries.items()], ""]
    return "\n".join(front + body)


def _metric_table(metrics: dict[str, Any]) -> list[str]:
    rows = [
        f"| {split} | {name} | {value:.4f} |" if isinstance(value, float) else f"| {split} | {name} | {value} |"
        for split, values in metrics.items()
        if isinstance(values, dict)
        for name, value in values.items()
        if isinstance(value, int | float | str)
    ]
    return ["| split | metric | value |", "|---|---|---|", *rows] if rows else ["No metrics were recorded."]
