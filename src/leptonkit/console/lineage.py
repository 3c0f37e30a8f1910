"""The lineage graph of a model: dataset -> run -> version -> adapters -> quantised versions, drawn as SVG.

Edges come from what registration records: a version's ``lineage.run_dir`` (the run that trained it), the run's
data (``lineage.data``: a prepared dataset's folder, or pretraining's text files), and any lineage value naming
another registered version (``base`` of an adapter, ``base_model``, ``continued_from``, the source of a quantised
version). A version whose lineage records a quantisation sits in the last column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from markupsafe import Markup

COLUMNS = ("dataset", "run", "model", "adapter", "quantised")
BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 150, 26, 40, 10, 8


@dataclass
class Node:
    id: str
    kind: str  # one of COLUMNS
    label: str
    href: str | None = None
    row: int = 0


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)

    def add(self, node: Node) -> str:
        self.nodes.setdefault(node.id, node)
        return node.id


def _data_paths(lineage: dict[str, Any]) -> list[str]:
    data = lineage.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        return [data["path"]]
    if isinstance(data, list):
        return [item for item in data if isinstance(item, str)]
    return [data] if isinstance(data, str) else []


def _kind(version: Any) -> str:
    if version.kind == "adapter":
        return "adapter"
    if any(key in version.lineage for key in ("quantization", "quantisation")):
        return "quantised"
    return "model"


def build(versions: list[Any], name: str, *, base: str, run_ids: dict[str, str]) -> Graph:
    """The graph around model ``name``: its versions, the versions they derive from or that derive from them, and
    their runs and data. ``run_ids`` maps a run folder to its console id; ``base`` is the console's URL prefix."""
    by_ref = {v.ref: v for v in versions}
    parents: dict[str, set[str]] = {}
    for version in versions:
        named = {value for value in version.lineage.values() if isinstance(value, str) and value in by_ref}
        parents[version.ref] = named - {version.ref}
    related = {v.ref for v in versions if v.name == name}
    grew = True
    while grew:  # close over ancestors and descendants
        before = len(related)
        for ref, ups in parents.items():
            if ref in related:
                related |= ups
            elif ups & related:
                related.add(ref)
        grew = len(related) > before
    graph = Graph()
    for ref in sorted(related, key=lambda r: (by_ref[r].name, by_ref[r].version)):
        version = by_ref[ref]
        node = graph.add(Node(f"v:{ref}", _kind(version), ref, f"{base}/registry/{version.name}#v{version.version}"))
        for parent in parents[ref]:
            graph.edges.add((f"v:{parent}", node))
        run_dir = version.lineage.get("run_dir")
        if isinstance(run_dir, str) and run_dir:
            run_id = run_ids.get(str(Path(run_dir).expanduser()))
            run = graph.add(
                Node(f"r:{run_dir}", "run", run_id or Path(run_dir).name, f"{base}/runs/{run_id}" if run_id else None)
            )
            graph.edges.add((run, node))
            upstream = run
        else:
            upstream = node
        for path in _data_paths(version.lineage):
            data = graph.add(Node(f"d:{path}", "dataset", Path(path).name, f"{base}/data#{data_anchor(path)}"))
            graph.edges.add((data, upstream))
    return graph


def data_anchor(path: str) -> str:
    return "d-" + "".join(c if c.isalnum() else "-" for c in path)[-80:]


def svg(graph: Graph) -> Markup:
    """The graph in columns (dataset, run, model, adapter, quantised), edges as curves from parent to child."""
    if not graph.nodes:
        return Markup('<p class="muted">no lineage recorded</p>')
    columns = [c for c in COLUMNS if any(n.kind == c for n in graph.nodes.values())]
    rows: dict[str, int] = dict.fromkeys(columns, 0)
    for node in graph.nodes.values():
        node.row = rows[node.kind]
        rows[node.kind] += 1
    height = PAD * 2 + 18 + max(rows.values()) * (BOX_H + GAP_Y)
    width = PAD * 2 + len(columns) * (BOX_W + GAP_X)

    def box(node: Node) -> tuple[float, float]:
        return PAD + columns.index(node.kind) * (BOX_W + GAP_X), PAD + 18 + node.row * (BOX_H + GAP_Y)

    parts = [
        f'<svg class="lineage" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="lineage graph">'
    ]
    for index, column in enumerate(columns):
        parts.append(
            f'<text x="{PAD + index * (BOX_W + GAP_X)}" y="{PAD + 10}" font-size="11" fill="#6b7280">{column}</text>'
        )
    for source, target in sorted(graph.edges):
        if source not in graph.nodes or target not in graph.nodes:
            continue
        (x0, y0), (x1, y1) = box(graph.nodes[source]), box(graph.nodes[target])
        start, end = (x0 + BOX_W, y0 + BOX_H / 2), (x1, y1 + BOX_H / 2)
        if x1 <= x0:  # same column (a model continued from a model): loop around the right side
            start, end = (x0 + BOX_W, y0 + BOX_H / 2), (x1 + BOX_W, y1 + BOX_H / 2)
            bend = start[0] + GAP_X * 0.8
            path = f"M{start[0]},{start[1]} C{bend},{start[1]} {bend},{end[1]} {end[0]},{end[1]}"
        else:
            middle = (start[0] + end[0]) / 2
            path = f"M{start[0]},{start[1]} C{middle},{start[1]} {middle},{end[1]} {end[0]},{end[1]}"
        parts.append(
            f'<path class="edge" d="{path}" fill="none" stroke="#9ca3af" stroke-width="1.2" '
            f'data-from="{escape(source)}" data-to="{escape(target)}"/>'
        )
    for node in graph.nodes.values():
        x, y = box(node)
        inner = (
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="4" fill="#f9fafb" stroke="#6b7280"/>'
            f'<text x="{x + 6}" y="{y + 17}" font-size="11" fill="#111827">{escape(node.label[:24])}</text>'
            f"<title>{escape(node.kind)}: {escape(node.label)}</title>"
        )
        group = f'<g class="node" data-kind="{node.kind}" data-id="{escape(node.id)}">{inner}</g>'
        parts.append(f'<a href="{escape(node.href)}">{group}</a>' if node.href else group)
    parts.append("</svg>")
    return Markup("".join(parts))
