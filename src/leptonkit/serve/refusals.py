"""The errors the serving layer refuses requests with, and how any :class:`LeptonkitError` becomes an HTTP answer
in OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``), for the middlewares and the app alike."""

from __future__ import annotations

from leptonkit.errors import InvalidInputError, LeptonkitError
from leptonkit.monitor import metrics
from leptonkit.serve.protocol import error_body

RETRY_AFTER_SECONDS = 1  # for a 429 that does not know better (a full queue)


class LimitError(InvalidInputError):
    """A request over a configured limit that no retry can meet (400; ``code`` names the limit)."""

    def __init__(self, message: str, *, code: str, hint: str | None = None, param: str | None = None) -> None:
        super().__init__(message, hint=hint, param=param)
        self.code = code


class BodyTooLargeError(LimitError):
    http_status = 413


class RateLimitError(LeptonkitError):
    """A request over a per-key rate or concurrency limit right now (429 with ``Retry-After``)."""

    http_status = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, code: str, retry_after: int) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class AuthenticationError(LeptonkitError):
    """A missing, invalid or revoked key (401) or a key whose scope does not allow the route (403)."""

    def __init__(self, message: str, *, status: int, error_type: str, code: str) -> None:
        super().__init__(message)
        self.http_status = status
        self.error_type = error_type
        self.code = code


def rate_limited(limit: str, retry_after: int, max_streams: int | None = None) -> RateLimitError:
    """The 429 for ``limit``, counted in ``leptonkit_rate_limited_total``."""
    metrics.RATE_LIMITED.labels(limit).inc()
    message = (
        f"too many concurrent streams for this key (limit {max_streams}); retry when one ends"
        if limit == "concurrent_streams"
        else f"rate limit exceeded ({limit}); retry in {retry_after} s"
    )
    return RateLimitError(message, code=limit, retry_after=retry_after)


def answer(err: LeptonkitError) -> tuple[int, dict, dict[str, str]]:
    """``(status, body, headers)`` of the HTTP answer to ``err``."""
    headers = {}
    if err.http_status == 429:
        headers["Retry-After"] = str(getattr(err, "retry_after", RETRY_AFTER_SECONDS))
    if err.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    code = getattr(err, "code", None) or err.http_status
    return err.http_status, error_body(str(err), err.error_type, err.param, code), headers
