"""Model references: ``NAME`` (latest version), ``NAME:VERSION`` or ``NAME@ALIAS``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from leptonkit.errors import InvalidInputError

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME_RE = re.compile(rf"^{NAME_PATTERN}$")
_REF_RE = re.compile(rf"^(?P<name>{NAME_PATTERN})(?::(?P<version>\d+)|@(?P<alias>{NAME_PATTERN}))?$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def validate_name(name: str, what: str = "name") -> str:
    if not _NAME_RE.match(name):
        raise InvalidInputError(
            f"invalid {what} {name!r}",
            hint="use letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def parse_ref(ref: str) -> ModelRef:
    match = _REF_RE.match(ref)
    if not match:
        raise InvalidInputError(f"invalid model reference {ref!r}", hint="write NAME, NAME:VERSION or NAME@ALIAS")
    version = match.group("version")
    return ModelRef(match.group("name"), int(version) if version else None, match.group("alias"))
