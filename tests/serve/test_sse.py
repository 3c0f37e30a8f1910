"""Server-sent events survive clients that split lines as Python's ``str.splitlines`` does (httpx's ``iter_lines``):
every character that splits there and may occur in generated text travels escaped inside its event's JSON."""

from __future__ import annotations

import json

import pytest

from leptonkit.serve.sse import sse_data

SPLITLINES_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines ends a line at


@pytest.mark.parametrize("char", list(SPLITLINES_BREAKS), ids=[f"U+{ord(c):04X}" for c in SPLITLINES_BREAKS])
def test_an_event_is_one_line_to_splitlines_and_gives_back_its_text(char):
    payload = {"choices": [{"delta": {"content": f"a{char}b 你好"}}]}
    lines = sse_data(payload).splitlines()
    assert lines[1:] == [""] and lines[0].startswith("data: ")
    assert json.loads(lines[0].removeprefix("data: ")) == payload
    assert "你好" in lines[0]  # the rest stays UTF-8, not escaped


def test_a_named_event_carries_its_name_on_its_own_line():
    assert sse_data({"type": "response.created"}, event="response.created").splitlines() == [
        "event: response.created",
        'data: {"type":"response.created"}',
        "",
    ]
