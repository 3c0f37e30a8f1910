"""What a validated request may ask of this server, checked by the routes before anything is queued.

The body is parsed once (``serve/parsing.py``) and validated once, by the protocol models the routes take; every
limit, filter and counter here reads that validated object, so no caller can write a request that the limits read
one way and the model reads another (``"max_tokens": "200"``, ``200.0``, a byte order mark, ``"stream": 1``).

- Input text: refused by the safety policy with 400 ``content_filter`` (``--safety-*``).
- Prompt length: 400 over ``--max-prompt-tokens``.
- ``max_tokens``/``max_completion_tokens``: 400 over ``--max-tokens-cap``; a request without either gets the cap
  (or what is left of the model's context) explicitly, never more.
- Rates: a generation request counts as one request per sequence (prompts × ``n``) and reserves its worst case of
  tokens (prompt plus ``max_tokens``, per sequence) against ``--rate-limit-rpm/-tpm``: 429 with ``Retry-After``
  while the key's buckets are short, 400 when the request could never fit in them. An encoder request counts one
  request per input text.
- Streams: a request that streams (as the model read ``stream``) takes one of its key's
  ``--max-streams-per-key`` slots, freed by the access middleware when the response ends.
"""

from __future__ import annotations

from starlette.requests import Request

from leptonkit.errors import InvalidInputError
from leptonkit.monitor import metrics
from leptonkit.security.ratelimit import RateLimiter
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.middleware import record_of
from leptonkit.serve.protocol import ChatCompletionRequest, CompletionRequest
from leptonkit.serve.refusals import LimitError, rate_limited

GenerationRequest = ChatCompletionRequest | CompletionRequest


async def admit_input(request: Request, model: str, texts: list[str]) -> None:
    """Note the request's model and text (log line, ``--log-content``) and refuse text the safety policy flags."""
    text = "\n".join(texts)
    record = record_of(request)
    if record is not None:
        record.model, record.prompt = model, text
    safety = request.app.state.safety
    if safety.active:
        await safety.check_input(text)


async def admit_encoder_input(request: Request, model: str, texts: list[str]) -> None:
    """An embeddings, classify or NER request: :func:`admit_input`, and one request per input text counted against
    ``--rate-limit-rpm`` (its tokens are charged when it ends)."""
    await admit_input(request, model, texts)
    reserve(request, sequences=len(texts), tokens=0)


def check_prompt_tokens(config: ServeConfig, prompts: list[list[int]]) -> None:
    """Refuse a prompt longer than ``--max-prompt-tokens`` (the model's context is checked by the route)."""
    limit = config.max_prompt_tokens
    longest = max((len(p) for p in prompts), default=0)
    if limit is not None and longest > limit:
        raise InvalidInputError(
            f"the prompt is {longest} tokens; this server accepts at most {limit}",
            hint="shorten the prompt",
            param="prompt",
        )


def max_tokens(body: GenerationRequest, cap: int | None, room: int) -> int:
    """The completion length a request gets: what it asked for, else the cap, else the ``room`` its prompt leaves in
    the model's context; 400 when it asked for more than the cap."""
    if cap is not None:
        for name in ("max_tokens", "max_completion_tokens"):
            value = getattr(body, name)
            if value is not None and value > cap:
                raise LimitError(
                    f"{name}={value} exceeds this server's cap of {cap} (send {name} <= {cap})",
                    code="max_tokens_too_large",
                    param=name,
                )
    requested = body.token_limit()
    if requested is not None:
        return requested
    return room if cap is None else min(cap, room)


def reserve(request: Request, sequences: int, tokens: int) -> None:
    """Count a generation request's ``sequences`` (the access middleware counted one) and reserve its worst-case
    ``tokens`` against its key's buckets, refunded when it ends."""
    limiter: RateLimiter | None = request.app.state.limiter
    record = record_of(request)
    if limiter is None or record is None or record.identity is None:
        return
    for asked, limit, unit, code in (
        (sequences, limiter.rpm, "sequences", "requests_per_minute"),
        (tokens, limiter.tpm, "tokens", "tokens_per_minute"),
    ):
        if limit is not None and asked > limit:
            raise LimitError(
                f"this request needs {asked} {unit} but a key may use at most {limit} per minute",
                hint="send fewer prompts, a smaller n or a smaller max_tokens",
                code=code,
            )
    refused = limiter.reserve(record.identity, sequences - 1, tokens)
    if refused is not None:
        raise rate_limited(*refused)
    record.reserved_tokens = tokens


def open_stream(request: Request) -> None:
    """Take one of the key's concurrent stream slots for this response (freed by the access middleware)."""
    record = record_of(request)
    if record is None:
        return
    limiter: RateLimiter | None = request.app.state.limiter
    if limiter is not None and record.identity is not None:
        if not limiter.open_stream(record.identity):
            raise rate_limited("concurrent_streams", 1, limiter.max_streams)
        record.stream_slot = True
    record.streaming = True
    metrics.STREAMS_ACTIVE.inc()
