"""Raw-text corpora for pretraining: checked reading, documents, and a held-out tail."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from leptonkit.errors import InvalidInputError

DOCUMENT_SEPARATOR = "<|endoftext|>"


def read_text_file(path: Path) -> str:
    """The file's text; a missing, binary, non-UTF-8 or empty file is one clear user error."""
    if not path.is_file():
        raise InvalidInputError(f"corpus file {path} not found", hint="give existing text files", param="data")
    raw = path.read_bytes()
    if b"\x00" in raw[: 1 << 16]:
        raise InvalidInputError(f"corpus file {path} is binary (it holds NUL bytes)", hint="give UTF-8 text files")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInputError(
            f"corpus file {path} is not UTF-8 text (bad byte at offset {err.start})", hint="give UTF-8 text files"
        ) from None
    if not text.strip():
        raise InvalidInputError(f"corpus file {path} is empty", hint="give files that hold text", param="data")
    return text


def split_documents(text: str) -> list[str]:
    """A text's documents: the parts between ``<|endoftext|>`` markers, else the whole text as one document."""
    return [part.strip("\n") for part in text.split(DOCUMENT_SEPARATOR) if part.strip()]


def load_documents(paths: Iterable[str | Path]) -> list[str]:
    """Documents of every file, in order (a file is one document unless it holds ``<|endoftext|>`` markers)."""
    return [doc for path in paths for doc in split_documents(read_text_file(Path(path).expanduser()))]


def hold_out_tail(documents: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """Split off the last ``fraction`` of the corpus' characters as held-out documents.

    Whole documents are taken from the end; the document that straddles the cut is split at the line break
    nearest to it, so one long file (Tiny Shakespeare) yields its last 10% as held-out text.
    """
    if fraction <= 0:
        return list(documents), []
    need = fraction * sum(len(doc) for doc in documents)
    train = list(documents)
    held: list[str] = []
    while train and need > 0:
        doc = train.pop()
        if len(doc) <= need:
            held.insert(0, doc)
            need -= len(doc)
            continue
        cut = len(doc) - int(need)
        line_break = doc.rfind("\n", 0, cut)
        cut = line_break + 1 if line_break > 0 else cut
        train.append(doc[:cut].rstrip("\n"))
        held.insert(0, doc[cut:])
        need = 0
    train, held = [doc for doc in train if doc.strip()], [doc for doc in held if doc.strip()]
    if not train or not held:
        raise InvalidInputError(
            f"the corpus ({sum(len(doc) for doc in documents)} characters) is too small to hold out {fraction:.0%}",
            hint="give more text, or set pretrain.valid_fraction=0",
            param="valid_fraction",
        )
    return train, held
