"""The training task a dataset is for, read from its first record, when that is unambiguous.

labels -> ``classification``; tokens with tags (or a CoNLL file) -> ``ner``; messages or instruction/response pairs
-> ``sft``. Text alone (a ``.txt`` corpus, rows with only a text column) says nothing about the task: that is a
one-line error asking for ``task=`` (or ``PretrainModel`` for a corpus). A prepared folder is read from its
``train.jsonl``; a raw file through the same readers as ``data prepare``.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from leptonkit.data.records import LABEL_COLUMNS, TEXT_COLUMNS
from leptonkit.data.sources import ReadOptions, RowError, detect_format, read_rows
from leptonkit.errors import InvalidInputError, NotFoundError

NER_KEYS = (("tokens", "words"), ("tags", "ner_tags", "labels"))
SFT_PAIRS = (("instruction", "output"), ("prompt", "response"), ("prompt", "completion"), ("question", "answer"))


def task_of_row(row: Any) -> str | None:
    """The task a row (dict, CoNLL ``(tokens, tags)`` or text) is for, or ``None`` when it cannot tell.

    >>> task_of_row({"text": "great film", "label": "positive"})
    'classification'
    >>> task_of_row({"tokens": ["Ada", "Lovelace"], "tags": ["B-PER", "I-PER"]})
    'ner'
    >>> task_of_row({"instruction": "Say hi", "output": "Hi!"})
    'sft'
    >>> task_of_row({"text": "just text"}) is None
    True
    """
    if isinstance(row, tuple):
        return "ner"
    if not isinstance(row, dict):
        return None
    tokens, tags = (next((k for k in keys if k in row), None) for keys in NER_KEYS)
    if tokens and tags and isinstance(row[tokens], list):
        return "ner"
    if "messages" in row or any(a in row and b in row for a, b in SFT_PAIRS):
        return "sft"
    if any(k in row for k in TEXT_COLUMNS) and any(k in row for k in LABEL_COLUMNS):
        return "classification"
    return None


def infer_task(data: str | os.PathLike[str]) -> str:
    """The task of a prepared dataset folder or a raw data file; one line naming ``task=`` when it is not clear."""
    path = Path(data).expanduser()
    if not path.exists():
        raise NotFoundError(f"data {path} not found", hint="give a prepared folder or a raw file", param="data")
    row: Any = None
    if path.is_dir():
        train = path / "train.jsonl"
        if train.is_file():
            with train.open(encoding="utf-8") as f:
                first = next((line for line in f if line.strip()), None)
            row = json.loads(first) if first else None
    else:
        fmt = None
        try:
            fmt = detect_format(path, None)
            row = next((r for _, r in itertools.islice(read_rows(path, fmt, ReadOptions()), 1)), None)
        except (RowError, InvalidInputError):
            row = None
        if fmt == "conll":
            return "ner"
    task = task_of_row(row)
    if task is None:
        raise InvalidInputError(
            f"cannot tell the task of {path} from its records",
            hint="pass task='classification', 'ner' or 'sft' (a plain text corpus: PretrainModel)",
            param="task",
        )
    return task
