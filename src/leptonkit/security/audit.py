"""The audit log: JSON lines of admin actions and authentication failures, appended and flushed one at a time.

Default file: ``LEPTONKIT_HOME/audit.log``. A line never holds a key or a secret, only the key's name.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leptonkit.config import home as default_home


class AuditLog:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_home() / "audit.log"
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        """Append one event (``auth_failure``, ``permission_denied``, ``admin_action``, ``key_created``, ...)."""
        line = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event} | fields
        text = json.dumps(line, default=str, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(text)
