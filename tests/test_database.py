"""Opening a shared SQLite store while another process holds it: the switch to WAL waits instead of failing."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from leptonkit import database


def _hold_write_lock(path: Path, seconds: float, started: threading.Event) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # as another process creating the schema in the fresh file does
    started.set()
    time.sleep(seconds)
    other.execute("COMMIT")
    other.close()


def test_switch_to_wal_waits_for_a_writer_that_plain_sqlite_fails_on(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (x)")
    started = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, 0.5, started))
    holder.start()
    started.wait()
    plain = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        plain.execute("PRAGMA journal_mode=WAL")
        raised = False
    except sqlite3.OperationalError as error:  # no busy handler for this lock: the failure the helper retries
        raised = "locked" in str(error)
    plain.close()
    conn = database.connect(path)
    holder.join()
    assert raised
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
