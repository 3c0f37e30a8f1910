"""Settings read from the environment (``LEPTONKIT_*``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def home() -> Path:
    """The leptonkit home: the registry database and artifacts live here (``LEPTONKIT_HOME``, default ~/.leptonkit)."""
    return Path(os.environ.get("LEPTONKIT_HOME", "~/.leptonkit")).expanduser()


def config_file() -> Path:
    """The user's settings file, ``LEPTONKIT_HOME/config.yaml`` (optional): for example their own resource shapes::

    resources:
      cpu.8x: {cpus: 8, memory: 16Gi}
      a100: {cpus: 8, gpus: 1, memory: 64Gi}
    """
    return home() / "config.yaml"


def user_config() -> dict[str, Any]:
    """The mapping in :func:`config_file`; ``{}`` when there is none, one error line when it is not a YAML mapping."""
    import yaml

    from leptonkit.errors import InvalidInputError

    path = config_file()
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise InvalidInputError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} must hold a mapping (e.g. resources: ...)")
    return data
