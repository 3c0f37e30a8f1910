"""Show word attributions to people: coloured words in the terminal, or one self-contained HTML page.

Colours are shared by both: green pushes towards the explained label (or entity), red pushes against it, and the
strength is the word's score relative to the largest absolute score of that explanation.
"""

from __future__ import annotations

import html

from rich.text import Text

_GREEN = (22, 163, 74)
_RED = (220, 38, 38)


def _colour(score: float, scale: float) -> tuple[int, int, int]:
    """A background blending white into green (positive) or red (negative) by ``|score| / scale``."""
    strength = min(abs(score) / scale, 1.0) if scale > 0 else 0.0
    target = _GREEN if score >= 0 else _RED
    return tuple(round(255 + (c - 255) * strength) for c in target)


def _segments(text: str, attributions: list[dict]) -> list[tuple[str, dict | None]]:
    """``text`` cut into attributed words and the untouched text between them, in order."""
    out: list[tuple[str, dict | None]] = []
    cursor = 0
    for item in sorted(attributions, key=lambda a: a["start"]):
        if item["start"] > cursor:
            out.append((text[cursor : item["start"]], None))
        out.append((text[item["start"] : item["end"]], item))
        cursor = item["end"]
    if cursor < len(text):
        out.append((text[cursor:], None))
    return out


def _scale(attributions: list[dict]) -> float:
    return max((abs(a["score"]) for a in attributions), default=0.0)


def _sections(result: dict) -> list[tuple[str, dict]]:
    """``(title, explanation)`` per explained prediction: one for a label, one per entity."""
    if "entities" in result:
        return [
            (f"{e['type']} “{e['text']}” [{e['start']}:{e['end']}] score {e['score']:.3f}", e)
            for e in result["entities"]
        ]
    return [(f"{result['label']} (score {result['score']:.3f})", result)]


def terminal_text(text: str, result: dict) -> list[Text]:
    """One rich :class:`Text` per explained prediction: a title line, then the text with coloured words."""
    method = result["method"]
    if not _sections(result):
        return [Text("no entities found", style="dim")]
    lines = []
    for title, explanation in _sections(result):
        scale = _scale(explanation["attributions"])
        line = Text()
        line.append(f"{title} · {method}\n", style="bold")
        for chunk, item in _segments(text, explanation["attributions"]):
            style = "black on rgb({},{},{})".format(*_colour(item["score"], scale)) if item else None
            line.append(chunk, style=style)
        lines.append(line)
    return lines


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 56rem; margin: 2rem auto; line-height: 2; color: #111; }}
h1 {{ font-size: 1.3rem; }} h2 {{ font-size: 1.05rem; margin-bottom: 0; }}
.text {{ font-size: 1.1rem; white-space: pre-wrap; }}
.w {{ padding: 0.1rem 0.15rem; border-radius: 0.2rem; }}
.entity {{ outline: 2px solid #1d4ed8; }}
.legend span {{ padding: 0.1rem 0.4rem; margin-right: 0.5rem; }}
table {{ border-collapse: collapse; margin-top: 0.5rem; font-size: 0.9rem; line-height: 1.4; }}
td, th {{ border: 1px solid #ddd; padding: 0.1rem 0.5rem; text-align: left; }}
</style></head><body>
<h1>{title}</h1>
<p class="legend">method <b>{method}</b> ·
<span style="background: rgb{green}">supports</span><span style="background: rgb{red}">opposes</span></p>
{sections}
</body></html>
"""


def html_page(text: str, result: dict, *, title: str = "leptonkit explanation") -> str:
    """A page with no external resources: coloured text per prediction, plus a table of word scores."""
    sections = []
    for heading, explanation in _sections(result):
        scale = _scale(explanation["attributions"])
        entity = (explanation["start"], explanation["end"]) if "entities" in result else None
        spans = []
        for chunk, item in _segments(text, explanation["attributions"]):
            if item is None:
                spans.append(html.escape(chunk))
                continue
            inside = entity is not None and entity[0] <= item["start"] and item["end"] <= entity[1]
            spans.append(
                f'<span class="w{" entity" if inside else ""}" style="background: rgb{_colour(item["score"], scale)}"'
                f' title="{item["score"]:+.4f}">{html.escape(chunk)}</span>'
            )
        rows = "".join(
            f"<tr><td>{html.escape(a['word'])}</td><td>{a['start']}</td><td>{a['end']}</td><td>{a['score']:+.4f}</td></tr>"
            for a in explanation["attributions"]
        )
        sections.append(
            f'<section><h2>{html.escape(heading)}</h2><p class="text">{"".join(spans)}</p>'
            f"<table><tr><th>word</th><th>start</th><th>end</th><th>score</th></tr>{rows}</table></section>"
        )
    if not sections:
        sections.append(f'<p class="text">{html.escape(text)}</p><p>no entities found</p>')
    return _PAGE.format(
        title=html.escape(title),
        method=html.escape(result["method"]),
        green=_GREEN,
        red=_RED,
        sections="\n".join(sections),
    )
