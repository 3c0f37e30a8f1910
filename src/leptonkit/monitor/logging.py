"""Structured request logs: one JSON line per request on the ``leptonkit.access`` logger.

Prompts and outputs never reach a log line unless the operator asked for them (``--log-content``), and then only
after PII redaction (``leptonkit.serve.middleware.redact_content``, the one gate every logged text passes through).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from typing import Any, TextIO

ACCESS_LOGGER = "leptonkit.access"


class JsonFormatter(logging.Formatter):
    """Render a record whose ``msg`` is a dict as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload = record.msg if isinstance(record.msg, dict) else {"message": record.getMessage()}
        line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)), "level": record.levelname}
        return json.dumps(line | payload, default=str, ensure_ascii=False)


@functools.cache
def access_logger() -> logging.Logger:
    """The access logger, writing JSON lines to stderr (configured once per process)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def send_access_lines_to(stream: TextIO) -> None:
    """Write the access lines to ``stream`` from now on (a process whose ``sys.stderr`` was replaced)."""
    for handler in access_logger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)


def log_request(fields: dict[str, Any]) -> None:
    """Write one access line (``None`` fields left out)."""
    logger = access_logger()
    if logger.isEnabledFor(logging.INFO):
        # makeRecord + handle rather than .info(): the caller is always this function, and findCaller's walk up a
        # deep ASGI stack was most of the cost of a log line.
        payload = {k: v for k, v in fields.items() if v is not None}
        logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, payload, (), None))
