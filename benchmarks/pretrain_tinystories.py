"""Pretrain the ``tiny`` preset on the TinyStories prefix (~1,092 stories, last 10% held out): the small generator
that writes simple English for the demo and the serving benchmarks, registered as ``tinystories`` in
``LEPTONKIT_HOME``. Writes ``results/pretrain_tinystories.json``.

The shared file lost TinyStories' ``<|endoftext|>`` separators; they are put back (a story starts where a
non-empty line directly follows a non-empty line) so that EOS falls between stories.

    .venv/bin/python benchmarks/pretrain_tinystories.py --minutes 8
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pretrain_common import SHARED, pretrain_benchmark, pretrain_parser


def with_story_separators(text: str) -> str:
    stories, current, previous_blank = [], [], True
    for line in text.split("\n"):
        if line.strip() and not previous_blank and current:
            stories.append("\n".join(current).strip("\n"))
            current = []
        current.append(line)
        previous_blank = not line.strip()
    stories.append("\n".join(current).strip("\n"))
    return "\n<|endoftext|>\n".join(story for story in stories if story.strip()) + "\n"


if __name__ == "__main__":
    arguments = pretrain_parser(__doc__, name="tinystories", minutes=8.0).parse_args()
    source = SHARED / "tinystories" / "tinystories_train_prefix.txt"
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "tinystories.txt"
        corpus.write_text(with_story_separators(source.read_text(encoding="utf-8")), encoding="utf-8")
        pretrain_benchmark(
            corpus,
            arguments,
            result_name="pretrain_tinystories",
            title="pretrain tiny preset on the TinyStories prefix (1,092 stories, last 10% held out)",
        )
