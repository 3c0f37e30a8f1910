"""Server-sent events: one ``data:`` line of JSON per event (after its ``event:`` name, where it has one), for the
OpenAI streams (chat, completions, Responses) and custom services' streams.

The JSON is UTF-8 (``ensure_ascii=False``: a Chinese character is 3 bytes, not a 6-byte escape), with three
exceptions. NEL (U+0085), LINE SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029) are written as ``\\u`` escapes.
SSE ends lines at CR and LF only, but Python's ``str.splitlines``, and so httpx's ``iter_lines`` (the way most Python
clients read a stream, ``leptonkit.Client`` among them), also ends them at these characters. A generated token that
holds one (a random-weight model sent one in a fuzz run) would cut its event into two halves that are not JSON.
``json.dumps`` already escapes every control character below U+0020, and these three can only occur inside strings,
where the escape means the same character.
"""

from __future__ import annotations

import json
from typing import Any

DONE = "data: [DONE]\n\n"
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def sse_data(payload: Any, event: str | None = None) -> str:
    """One event: ``event: <name>`` where given, ``data: <JSON>``, and the blank line that ends it."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).translate(_LINE_BREAKS)
    return f"event: {event}\ndata: {text}\n\n" if event else f"data: {text}\n\n"
