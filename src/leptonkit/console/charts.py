"""Line charts as SVG drawn on the server: no JavaScript, nothing to vendor, readable by tests and screen readers.

Every point of a series is a ``<circle class="point">`` (with its step and value in ``data-`` attributes and a
``<title>`` tooltip), joined by one ``<polyline>``; a chart of several series (runs compared) gives each a colour
and a legend entry. Only presentation attributes are used (no ``style``), so the console's Content-Security-Policy
needs no ``unsafe-inline``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04")
WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 28, 36  # the legend sits in the right margin, off the curves
MAX_POINTS = 5000  # beyond this a series is thinned (every k-th point) and the chart says so


@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high == low:
        return [low]
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"


def line_chart(series: list[Series], *, title: str, y_label: str, chart_id: str, x_label: str = "step") -> Markup:
    """An SVG chart of ``series`` (``(x, y)`` points each); an empty chart says there is nothing to draw."""
    finite = [[(x, y) for x, y in s.points if math.isfinite(x) and math.isfinite(y)] for s in series]
    every = [p for points in finite for p in points]
    head = (
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{LEFT}" y="16" class="chart-title" font-size="13" font-weight="600">{escape(title)}</text>'
    )
    if not every:
        return Markup(
            f'{head}<text x="{LEFT}" y="{HEIGHT // 2}" font-size="12" fill="#6b7280">no points logged</text></svg>'
        )
    xs, ys = [p[0] for p in every], [p[1] for p in every]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y0 == y1:
        y0, y1 = y0 - 0.5, y1 + 0.5
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (plot_w * (x - x0) / (x1 - x0) if x1 > x0 else plot_w / 2)

    def sy(y: float) -> float:
        return TOP + plot_h * (1 - (y - y0) / (y1 - y0))

    parts = [head, '<g class="axes" stroke="#9ca3af" font-size="10" fill="#374151">']
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>')
    for tick in _ticks(y0, y1):
        parts.append(f'<text x="{LEFT - 6}" y="{sy(tick) + 3:.1f}" text-anchor="end" stroke="none">{_fmt(tick)}</text>')
    for tick in _ticks(x0, x1):
        parts.append(
            f'<text x="{sx(tick):.1f}" y="{TOP + plot_h + 14}" text-anchor="middle" stroke="none">{_fmt(tick)}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle" stroke="none">'
        f"{escape(x_label)}</text>"
        f'<text x="12" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" stroke="none" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.0f})">{escape(y_label)}</text></g>'
    )
    for index, (item, points) in enumerate(zip(series, finite, strict=True)):
        colour = PALETTE[index % len(PALETTE)]
        step = max(1, math.ceil(len(points) / MAX_POINTS))
        shown = points[::step]
        label = item.label + (f" (every {step}th of {len(points)} points)" if step > 1 else "")
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in shown)
        parts.append(f'<g class="series" data-label="{escape(item.label)}" data-points="{len(shown)}">')
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>')
        parts.extend(
            f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2" fill="{colour}" data-x="{x:g}" '
            f'data-y="{y:.6g}"><title>{escape(item.label)} {escape(x_label)} {x:g}: {y:.6g}</title></circle>'
            for x, y in shown
        )
        legend_y = TOP + 4 + 14 * index
        parts.append(
            f'<rect x="{WIDTH - RIGHT + 12}" y="{legend_y - 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{WIDTH - RIGHT + 27}" y="{legend_y + 1}" font-size="11">{escape(label)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
