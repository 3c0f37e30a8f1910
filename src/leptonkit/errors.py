"""One exception hierarchy for the whole package.

Every error a user can cause derives from :class:`LeptonkitError`. The CLI prints ``str(err)`` as one line and
exits with ``err.exit_code``; the HTTP server answers ``err.http_status`` in OpenAI's error shape. Anything that
is not a ``LeptonkitError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class LeptonkitError(Exception):
    """A user-facing error: what went wrong, where, and how to fix it."""

    exit_code: int = 2
    http_status: int = 400
    error_type: str = "invalid_request_error"

    def __init__(self, message: str, *, hint: str | None = None, param: str | None = None) -> None:
        self.message = message
        self.hint = hint
        self.param = param
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InvalidInputError(LeptonkitError):
    """Bad arguments, a bad file or a bad request body."""


class NotFoundError(LeptonkitError):
    """A model, version, alias, file or adapter that does not exist."""

    http_status = 404
    error_type = "not_found_error"


class ConflictError(LeptonkitError):
    """The action would break an invariant (e.g. removing a version an alias points at)."""

    http_status = 409
    error_type = "conflict_error"


class IntegrityError(LeptonkitError):
    """Stored files no longer match their recorded hashes."""

    exit_code = 1
    http_status = 500
    error_type = "integrity_error"

    def __init__(self, message: str, *, damaged: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.damaged = damaged
