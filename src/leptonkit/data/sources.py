"""Streaming readers: each yields ``(line_number, row)`` from one file without loading it whole.

Formats: jsonl, json (one array of objects, decoded incrementally), csv, tsv (quoting off: real sentiment files
hold bare quotes), conll (token and tag columns, blank line between sentences, ``-DOCSTART-`` skipped) and txt
(one document per file, per blank-line block or per line). A row a reader cannot parse is a :class:`RowError`
carrying its line number; the caller decides (``--on-error skip|fail``).
"""

from __future__ import annotations

import codecs
import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leptonkit.errors import InvalidInputError

FORMATS = ("jsonl", "json", "csv", "tsv", "conll", "txt")
EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".conll": "conll",
    ".iob": "conll",
    ".bio": "conll",
    ".txt": "txt",
    ".text": "txt",
    ".md": "txt",
}
DOC_UNITS = ("block", "file", "line")
_JSON_CHUNK = 1 << 16

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class RowError(ValueError):
    """One unreadable row: the message says what is wrong with it; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class ReadOptions:
    fmt: str | None = None
    tag_col: int = -1
    doc_unit: str = "block"
    csv_quoting: bool | None = None  # None: on for csv, off for tsv
    header: bool = True  # False: no header row; columns are named by index "0", "1", ...
    encoding: str = "utf-8"


def detect_format(path: Path, fmt: str | None, task: str | None = None) -> str:
    """The format named by ``--format``, else by the extension; a ``.txt`` file of an ner task is CoNLL."""
    if fmt:
        if fmt not in FORMATS:
            raise InvalidInputError(f"unknown format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
        return fmt
    found = EXTENSIONS.get(path.suffix.lower())
    if found == "txt" and task == "ner":
        return "conll"
    if found is None:
        raise InvalidInputError(
            f"cannot tell the format of {path} from its extension",
            hint=f"pass --format ({', '.join(FORMATS)})",
        )
    return found


def read_rows(path: Path, fmt: str, options: ReadOptions) -> Iterator[tuple[int, Any]]:
    """``(line, row)`` pairs; a row is a dict (jsonl, json, csv, tsv), ``(tokens, tags)`` (conll) or ``str`` (txt).

    Text is decoded strictly in ``options.encoding``: a byte that does not decode is an :class:`InvalidInputError`
    naming the line and the ``--encoding`` that reads it, never a replacement character written into a dataset."""
    check_encoding(options.encoding)
    reader = {"jsonl": _jsonl, "json": _json_array, "csv": _delimited, "tsv": _delimited, "conll": _conll}.get(
        fmt, _text
    )
    return _decoded(path, options.encoding, reader(path, fmt, options))


def check_encoding(encoding: str) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InvalidInputError(
            f"unknown --encoding {encoding!r}", hint="use a Python codec name such as utf-8, gbk, gb18030 or big5"
        ) from None
    return encoding


def _decoded(path: Path, encoding: str, rows: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    try:
        yield from rows
    except UnicodeDecodeError:
        raise encoding_error(path, encoding) from None


# Encodings tried, in order, to name the fix when a file does not decode (GBK files are the common case).
_GUESSES = ("gbk", "gb18030", "big5", "shift_jis", "cp1252")


def encoding_error(path: Path, encoding: str) -> InvalidInputError:
    """Where ``path`` stops decoding as ``encoding`` (line and byte), and an encoding that reads the whole file."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line, offset, bad = 1, 0, None
    with path.open("rb") as f:
        while bad is None and (chunk := f.read(1 << 16)):
            pending = len(decoder.getstate()[0])  # bytes of the previous chunk held back, decoded with this one
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                bad = max(offset - pending + err.start, 0)
                line += chunk[: max(bad - offset, 0)].count(b"\n")
                break
            line += chunk.count(b"\n")
            offset += len(chunk)
    guess = next((g for g in _GUESSES if g != codecs.lookup(encoding).name and _decodes(path, g)), None)
    where = f"{path}:{line}: not valid {encoding} text" + (f" (byte {bad})" if bad is not None else "")
    if guess:
        hint = f"it reads as {guess}: pass --encoding {guess}, or convert it: iconv -f {guess} -t utf-8 FILE"
    else:
        hint = "pass --encoding with the file's encoding (e.g. --encoding gbk), or convert it to utf-8"
    return InvalidInputError(where, hint=hint)


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 16):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _open(path: Path, encoding: str = "utf-8"):
    return path.open(encoding=encoding, errors="strict", newline="")


def _jsonl(path: Path, fmt: str, options: ReadOptions) -> Iterator[tuple[int, Any]]:
    with _open(path, options.encoding) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield number, RowError(number, f"invalid JSON ({err.msg} at column {err.colno})")
                continue
            yield number, row if isinstance(row, dict) else RowError(number, "a JSON line must be an object")


def _json_array(path: Path, fmt: str, options: ReadOptions) -> Iterator[tuple[int, Any]]:
    """Elements of a top-level JSON array, decoded one at a time from a sliding buffer (bounded memory)."""
    decoder = json.JSONDecoder()
    with _open(path, options.encoding) as f:
        buffer, line, started, eof = "", 1, False, False
        while True:
            stripped = buffer.lstrip(" \t\r\n,")
            line += buffer[: len(buffer) - len(stripped)].count("\n")
            buffer = stripped
            if not buffer and not eof:
                buffer = f.read(_JSON_CHUNK)
                eof = not buffer
                continue
            if not buffer:
                raise InvalidInputError(f"{path}: the JSON array is not closed", hint="end the file with ']'")
            if not started:
                if buffer[0] != "[":
                    raise InvalidInputError(f"{path}: a .json input must hold one array of records", hint="use .jsonl")
                buffer, started = buffer[1:], True
                continue
            if buffer[0] == "]":
                return
            try:
                row, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError as err:
                if eof:
                    raise InvalidInputError(
                        f"{path}:{line + err.lineno - 1}: invalid JSON ({err.msg})", hint="fix the file"
                    ) from None
                chunk = f.read(_JSON_CHUNK)
                eof = not chunk
                buffer += chunk
                continue
            yield line, row if isinstance(row, dict) else RowError(line, "an array element must be an object")
            line += buffer[:end].count("\n")
            buffer = buffer[end:]


def _csv_reader(f, fmt: str, options: ReadOptions):
    quoting = options.csv_quoting if options.csv_quoting is not None else fmt == "csv"
    return csv.reader(
        f, delimiter="\t" if fmt == "tsv" else ",", quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
    )


def _delimited(path: Path, fmt: str, options: ReadOptions) -> Iterator[tuple[int, Any]]:
    """Rows as dicts keyed by the header; without one (``header=False``) keyed ``"0"``, ``"1"``, ... by position,
    the width fixed by the first row."""
    with _open(path, options.encoding) as f:
        reader = _csv_reader(f, fmt, options)
        header = None
        if options.header:
            header = next(reader, None)
            if header is None:
                return
            header = [h.strip() for h in header]
        for values in reader:
            number = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if header is None:
                header = [str(k) for k in range(len(values))]
            elif len(values) != len(header):
                where = "the header has" if options.header else "the first row has"
                yield number, RowError(number, f"{len(values)} columns where {where} {len(header)}")
                continue
            yield number, dict(zip(header, values, strict=True))


def csv_header(path: Path, fmt: str, options: ReadOptions | None = None) -> list[str]:
    """The column names: the header row, or ``"0"``, ``"1"``, ... for the first non-blank row of a headerless file."""
    options = options or ReadOptions()
    try:
        with _open(path, check_encoding(options.encoding)) as f:
            reader = _csv_reader(f, fmt, options)
            for values in reader:
                if not options.header:
                    if not any(v.strip() for v in values):
                        continue
                    return [str(k) for k in range(len(values))]
                return [h.strip() for h in values]
    except UnicodeDecodeError:
        raise encoding_error(path, options.encoding) from None
    return []


def _conll(path: Path, fmt: str, options: ReadOptions) -> Iterator[tuple[int, Any]]:
    """Sentences of a CoNLL file; the column count is fixed by the first token line, and must not change."""
    tokens: list[str] = []
    tags: list[str] = []
    start, width, bad = 0, None, None
    with _open(path, options.encoding) as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if line.startswith("-DOCSTART-") or not line:
                if tokens or bad:
                    yield start, bad or (tokens, tags)
                tokens, tags, bad = [], [], None
                continue
            columns = line.split()
            if width is None:
                width = len(columns)
                if width < 2 or not -width <= options.tag_col < width:
                    raise InvalidInputError(
                        f"{path}:{number}: CoNLL line has {width} column(s), cannot take tag column {options.tag_col}",
                        hint="a CoNLL file needs TOKEN ... TAG columns separated by whitespace; set --tag-col",
                    )
            if not tokens and bad is None:
                start = number
            if len(columns) != width:
                bad = bad or RowError(number, f"{len(columns)} columns where the file has {width}")
                continue
            tokens.append(columns[0])
            tags.append(columns[options.tag_col])
    if tokens or bad:
        yield start, bad or (tokens, tags)


def _text(path: Path, fmt: str, options: ReadOptions) -> Iterator[tuple[int, Any]]:
    if options.doc_unit not in DOC_UNITS:
        raise InvalidInputError(f"unknown --doc-unit {options.doc_unit!r}", hint=f"use one of: {', '.join(DOC_UNITS)}")
    with _open(path, options.encoding) as f:
        if options.doc_unit == "file":
            yield 1, f.read()
            return
        block: list[str] = []
        start = 1
        for number, line in enumerate(f, 1):
            if options.doc_unit == "line":
                if line.strip():
                    yield number, line
                continue
            if line.strip():
                if not block:
                    start = number
                block.append(line)
            elif block:
                yield start, "".join(block)
                block = []
        if block:
            yield start, "".join(block)
