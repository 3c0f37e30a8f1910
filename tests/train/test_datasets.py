"""Prepared datasets read back as written: a JSON line ends at "\n" alone, wherever a string holds a character that
``str.splitlines`` would also end a line at."""

from __future__ import annotations

import json
from pathlib import Path

from leptonkit.train import datasets

LINE_ENDS_IN_TEXT = "a\x85b\u2028c\u2029d"  # raw in JSON written with ensure_ascii=False, as data prepare writes it


def test_a_split_whose_strings_hold_unicode_line_ends_reads_back_whole(tmp_path: Path) -> None:
    records = [{"text": f"{LINE_ENDS_IN_TEXT} {i}", "label": str(i % 2)} for i in range(4)]
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in records)  # CRLF line ends read too
    (tmp_path / "train.jsonl").write_text(lines, encoding="utf-8", newline="")
    assert datasets.load(tmp_path, "classification").splits["train"] == records
