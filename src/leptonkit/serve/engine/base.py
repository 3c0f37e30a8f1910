"""What every generation engine (native continuous batching, vLLM) offers the HTTP routes.

A request is submitted as prompt token ids plus :class:`SamplingParams`; the engine answers with an async stream of
:class:`Delta` objects, one per generated token (text may be empty while a multi-byte character or a possible stop
string is held back), the last one carrying ``finish_reason``. Closing the stream early aborts the request and frees
its slot at the next engine step. A stream may instead raise a :class:`LeptonkitError`: :class:`SequenceError` when
this one sequence failed (the rest of the batch goes on), or the error that ended the whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from leptonkit.errors import LeptonkitError


class QueueFullError(LeptonkitError):
    """The engine's waiting queue is full: the client should retry later (HTTP 429 with ``Retry-After``)."""

    http_status = 429
    error_type = "rate_limit_error"


class SequenceError(LeptonkitError):
    """One sequence failed in the shared engine step (its sampling, its stop strings): that sequence ends with this
    error and every other sequence of the batch goes on. Sampling settings are normalised to ranges the kernels
    handle (:class:`SamplingParams`), so what still gets here is specific to this request: a 400, not a 500."""

    error_type = "invalid_request_error"


class DeadlineError(LeptonkitError):
    """A request did not finish within the server's request timeout (HTTP 504)."""

    http_status = 504
    error_type = "timeout_error"


# vLLM's thresholds (vllm/sampling_params.py: _SAMPLING_EPS, _MAX_TEMP): below GREEDY_BELOW sampling is greedy;
# between it and MIN_TEMPERATURE the temperature is raised to MIN_TEMPERATURE, where ``logits / temperature`` stays
# finite (``temperature: 1e-45`` made it inf, softmax NaN, and ``torch.multinomial`` raised for the whole batch).
GREEDY_BELOW = 1e-5
MIN_TEMPERATURE = 1e-2


@dataclass(frozen=True)
class Structured:
    """What a request's output must match, enforced while decoding (``engine.grammar``): ``kind`` is
    ``"json_object"`` (any JSON object), ``"json_schema"`` (``spec``: the schema's JSON text; ``strict``: no
    properties or items beyond the schema's) or ``"structural_tag"`` (``spec``: an xgrammar structural tag's JSON
    text, which is how tool calls are constrained)."""

    kind: str
    spec: str = ""
    strict: bool = True


@dataclass
class SamplingParams:
    """Per-request sampling: ``temperature`` below :data:`GREEDY_BELOW` is greedy (stored as 0), a positive one below
    :data:`MIN_TEMPERATURE` is raised to it; ``seed`` makes sampling reproducible (any int, reduced modulo 2**64).

    The logits controls have vLLM's meanings (``engine.logits``): ``presence_penalty`` and ``frequency_penalty``
    subtract from the logits of tokens generated so far (once, or once per occurrence), ``repetition_penalty``
    divides positive and multiplies negative logits of tokens in the prompt or the output, ``logit_bias`` adds to
    token ids' logits, ``min_tokens`` keeps the end-of-sequence and ``stop_token_ids`` tokens (and stop strings)
    from ending the output before that many tokens; ``top_k`` (0: off) samples among the k most likely tokens;
    sampling a token of ``stop_token_ids`` ends the output, the token's text included unless it is special."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0
    ignore_eos: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    min_tokens: int = 0
    top_k: int = 0
    stop_token_ids: list[int] = field(default_factory=list)
    structured: Structured | None = None  # a grammar the output must match (``engine.grammar``)

    def __post_init__(self) -> None:
        if self.temperature < GREEDY_BELOW:
            self.temperature = 0.0
        elif self.temperature < MIN_TEMPERATURE:
            self.temperature = MIN_TEMPERATURE

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @property
    def controls_logits(self) -> bool:
        """Whether this request changes its logits before sampling (a row without controls is left untouched)."""
        return bool(
            self.presence_penalty
            or self.frequency_penalty
            or self.repetition_penalty != 1.0
            or self.logit_bias
            or self.min_tokens
            or self.structured is not None
        )


@dataclass
class TokenLogprob:
    """A token's text, log-probability and raw bytes, and the most likely alternatives (``top``) likewise. ``raw``
    is the token's own bytes (``engine.detokenize.TokenBytes``): part of a UTF-8 character for a token that splits
    one, where ``token`` shows those bytes escaped."""

    token: str
    logprob: float
    top: list[TokenLogprob] = field(default_factory=list)
    raw: bytes | None = None  # None: the token's text in UTF-8


@dataclass
class Delta:
    """New output of one request: usually one token; several when the consumer fell behind."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprob: TokenLogprob | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def generation_defaults(config: Any) -> dict[str, Any]:
    """What a model's generation config sets (not transformers' own defaults) for a request that leaves it out:
    ``temperature`` (0, greedy, where the config sets one but not ``do_sample``), ``top_p``, and ``max_tokens`` from
    ``max_new_tokens``. A config that sets none of them leaves OpenAI's defaults (temperature 1, top_p 1)."""
    if config is None:
        return {}
    diff = config.to_diff_dict()
    defaults: dict[str, Any] = {}
    if diff.get("temperature") is not None:
        defaults["temperature"] = float(diff["temperature"]) if config.do_sample else 0.0
    if diff.get("top_p") is not None:
        defaults["top_p"] = float(diff["top_p"])
    if diff.get("max_new_tokens") is not None:
        defaults["max_tokens"] = int(diff["max_new_tokens"])
    return defaults


class GenerationEngine(Protocol):
    """A generator behind the OpenAI routes. ``tokenizer`` formats prompts; ``context_length`` bounds them."""

    name: str
    tokenizer: Any
    context_length: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def check_room(self, sequences: int, owner: str | None = None) -> None:
        """Raise unless ``sequences`` more sequences of ``owner`` (an API key's name) can be queued now:
        :class:`QueueFullError` (429) when they could later, ``InvalidInputError`` (400) when they never can."""

    def check_structured(self, structured: Structured) -> None:
        """Raise ``InvalidInputError`` unless this engine can enforce ``structured`` (blocking: it may compile)."""

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, *, adapter: str | None = None, owner: str | None = None
    ) -> AsyncIterator[Delta]: ...

    async def add_adapter(self, name: str, path: str) -> None: ...

    async def remove_adapter(self, name: str) -> None: ...

    def stats(self) -> dict[str, int]: ...


async def collect(stream: AsyncIterator[Delta]) -> list[Delta]:
    """All deltas of a stream (non-streaming requests); cancelling it aborts the request."""
    async with contextlib.aclosing(stream):
        return [delta async for delta in stream]


def deliver(loop: asyncio.AbstractEventLoop, items: list[tuple[asyncio.Queue, Any]], *, wait: float = 0.0) -> None:
    """Hand a batch of (queue, item) pairs from an engine thread to the event loop in one wake-up.

    With ``wait`` (seconds, at most), the engine thread also waits until the loop has run the consumers these items
    woke (one pass of its ready queue after them: each consumer takes its item, writes its SSE chunk and awaits the
    next), so that their work does not run during the engine's next step. Overlapping them is slower on a CPU whose
    cores the engine's torch threads all use: the loop's thread preempts one of the step's OpenMP workers, and it
    contends for the GIL with the step's Python, which inductor's compiled CPU kernels hold while they run.
    Measured on 2 CPUs (SmolLM2-135M W8A8 ``--compile``, 32 streams, served): a decode step took 33 ms while
    overlapped, and 27 ms plus a 1.8 ms wait handed over (27 ms in process, with no HTTP).
    """
    if not items or loop.is_closed():
        return
    sent = threading.Event() if wait else None

    def put_all() -> None:
        for queue, item in items:
            queue.put_nowait(item)
        if sent is not None:  # runs after the consumers that put_all woke, which run after it
            loop.call_soon(sent.set)

    loop.call_soon_threadsafe(put_all)
    if sent is not None:
        sent.wait(wait)
