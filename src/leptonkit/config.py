"""Settings read from the environment (``LEPTONKIT_*``)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The leptonkit home: the registry database and artifacts live here (``LEPTONKIT_HOME``, default ~/.leptonkit)."""
    return Path(os.environ.get("LEPTONKIT_HOME", "~/.leptonkit")).expanduser()
