"""The HTML page and terminal colouring, and ``leptonkit explain`` end to end through the real CLI."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from leptonkit.explain.explainer import explain
from leptonkit.explain.render import html_page, terminal_text

TEXT = "a <b>bold</b> & touching film"


class _Spans(HTMLParser):
    """Collects the attributed words (spans with a score title) and every tag that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.words: list[tuple[str, str]] = []
        self.external: list[str] = []
        self._title: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "link", "img", "iframe") or "src" in attrs or "href" in attrs:
            self.external.append(tag)
        if tag == "span" and "title" in attrs:
            self._title = attrs["title"]

    def handle_data(self, data):
        if self._title is not None:
            self.words.append((data, self._title))
            self._title = None


def test_html_page_is_self_contained_and_shows_every_word(tiny_classifier):
    result = explain(tiny_classifier, TEXT, method="gxi")
    page = html_page(TEXT, result)
    parser = _Spans()
    parser.feed(page)
    assert parser.external == []
    assert [word for word, _ in parser.words] == TEXT.split()
    assert [title for _, title in parser.words] == [f"{a['score']:+.4f}" for a in result["attributions"]]
    assert "<b>bold" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert result["label"] in page


def test_terminal_colours_words_by_sign(tiny_classifier):
    from rich.console import Console

    result = explain(tiny_classifier, TEXT, method="gxi")
    console = Console(force_terminal=True, color_system="truecolor", width=200)
    with console.capture() as captured:
        for line in terminal_text(TEXT, result):
            console.print(line)
    coloured = re.findall(r"48;2;(\d+);(\d+);\d+m([^\x1b]*)", captured.get())  # 24-bit background, then the word
    assert [word for _, _, word in coloured] == [a["word"] for a in result["attributions"]]
    for (red, green, _), item in zip(coloured, result["attributions"], strict=True):
        assert (int(green) >= int(red)) == (item["score"] >= 0), item


def test_cli_explain_json_html_and_errors(tiny_classifier, registry, cli, tmp_path):
    ref = registry.register(
        tiny_classifier.model, name="sentiment", task="classification", tokenizer=tiny_classifier.tokenizer
    ).ref
    page = tmp_path / "why.html"
    ok = cli("explain", ref, TEXT, "--method", "gxi", "--json", "--html", str(page))
    assert ok.returncode == 0, ok.stderr
    data = ok.json()
    assert data["label"] in tiny_classifier.labels and 0 <= data["score"] <= 1
    assert [(a["word"], a["start"], a["end"]) for a in data["attributions"]] == [
        (w, TEXT.index(w), TEXT.index(w) + len(w)) for w in TEXT.split()
    ]
    assert page.read_text().startswith("<!doctype html>")

    empty = cli("explain", ref, "  ")
    assert empty.returncode == 2
    assert empty.stderr.strip().splitlines() == ["error: the text to explain is empty (pass some words to explain)"]
