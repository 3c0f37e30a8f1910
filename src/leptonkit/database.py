"""SQLite connections for the stores every process shares (the registry, the API keys).

Several processes may open a fresh home at once (the ranks of one ``pretrain --nnodes 2`` run, replicas). WAL mode
is a property of the database file, set once; switching to it takes an exclusive lock for which SQLite does not
call the busy handler, so a second process doing the same switch at the same moment got ``database is locked``
at once. The switch is therefore made only when the file is not in WAL yet, and retried until the timeout.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

BUSY_TIMEOUT_S = 60.0


def connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """An autocommit connection to ``path`` in WAL mode that waits up to :data:`BUSY_TIMEOUT_S` for locks."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=check_same_thread)
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.01)
    return conn
