"""Shared by ``/v1/chat/completions`` and ``/v1/completions``: limits, submission, SSE streaming, response bodies.

The two endpoints differ only in how a prompt becomes token ids and in the shape of a choice, which
:class:`Shape` captures. Every check that depends on the model (prompt length vs context) happens before anything is
queued, so a bad request is a 400 that costs the batch nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive

from leptonkit.errors import InvalidInputError, LeptonkitError
from leptonkit.serve.admission import check_prompt_tokens, max_tokens, open_stream, reserve
from leptonkit.serve.engine.base import DeadlineError, Delta, SamplingParams, Structured, TokenLogprob, collect
from leptonkit.serve.middleware import CLIENT_CLOSED, annotate, metered, record_of
from leptonkit.serve.models import Target
from leptonkit.serve.protocol import error_body
from leptonkit.serve.sse import DONE, sse_data
from leptonkit.serve.tool_calls import ToolCallParser, parse


@dataclass
class Shape:
    chat: bool
    tools: bool = False  # a chat request with tools: its text is split into content and ``tool_calls``

    @property
    def object(self) -> str:
        return "chat.completion" if self.chat else "text_completion"

    @property
    def chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def choice(self, index: int, text: str, logprobs: Any, finish: str | None, *, stream: bool) -> dict[str, Any]:
        if not self.chat:
            return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
        if self.tools and not stream:
            content, calls = parse(text)
            message = {"role": "assistant", "content": content} | ({"tool_calls": calls} if calls else {})
            finish = "tool_calls" if calls and finish == "stop" else finish
            return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}
        key, content = ("delta", {"content": text} if text else {}) if stream else ("message", _message(text))
        return {"index": index, key: content, "logprobs": logprobs, "finish_reason": finish}

    def parser(self) -> ToolCallParser | None:
        return ToolCallParser() if self.tools else None

    def stream_choices(
        self, index: int, delta: Delta, logprobs: Any, parser: ToolCallParser | None
    ) -> list[dict[str, Any]]:
        """The streamed choices for one delta: one, or with tools what the parser makes of its text (content, a
        call's name, pieces of its arguments), the last carrying the finish reason."""
        finish = delta.finish_reason
        if parser is None:
            if not (delta.text or finish or logprobs):
                return []
            return [self.choice(index, delta.text, logprobs, finish, stream=True)]
        parts = parser.feed(delta.text, final=finish is not None)
        finish = "tool_calls" if parser.calls and finish == "stop" else finish
        if not parts and (finish or logprobs):
            parts = [{}]
        if not parts:
            return []
        ends = [None] * (len(parts) - 1) + [finish]
        return [
            {"index": index, "delta": part, "logprobs": None if i else logprobs, "finish_reason": end}
            for i, (part, end) in enumerate(zip(parts, ends, strict=True))
        ]

    def logprobs(self, deltas: list[Delta], offset: int = 0) -> Any:
        entries = [d.logprob for d in deltas if d.logprob is not None]
        if not entries:
            return None
        if self.chat:
            content = [_chat_logprob(e) | {"top_logprobs": [_chat_logprob(t) for t in e.top]} for e in entries]
            return {"content": content}
        offsets = []
        for d in deltas:  # a delta with logprobs is one token; its text may wait for the rest of a character
            if d.logprob is not None:
                offsets.append(offset)
            offset += len(d.text)
        return {
            "tokens": [e.token for e in entries],
            "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{t.token: t.logprob for t in e.top} for e in entries],
            "text_offset": offsets,
        }


def _chat_logprob(entry: TokenLogprob) -> dict[str, Any]:
    """A token's entry in chat logprobs: ``bytes`` are its own raw bytes (part of a character, for some)."""
    raw = entry.raw if entry.raw is not None else entry.token.encode()
    return {"token": entry.token, "logprob": entry.logprob, "bytes": list(raw)}


def _message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def sampling_params(
    body: Any,
    prompt_len: int,
    context: int,
    cap: int | None,
    *,
    logprobs: bool,
    top: int,
    vocab: int,
    defaults: dict[str, Any] | None = None,
) -> SamplingParams:
    """Check the prompt and ``max_tokens`` against the model's context and ``--max-tokens-cap``; both lengths are
    named on failure. Without ``max_tokens`` a request gets its model's ``defaults`` (``generation_defaults``), the
    cap, or what its prompt leaves of the context, whichever is least; ``defaults`` also give the temperature and
    top_p of a request that sends none. Token ids in ``logit_bias`` and ``stop_token_ids`` must lie in ``vocab``."""
    defaults = defaults or {}
    given = body.model_fields_set
    if prompt_len == 0:
        raise InvalidInputError("the prompt is empty", hint="send at least one token of text", param="prompt")
    if prompt_len >= context:
        raise InvalidInputError(
            f"the prompt is {prompt_len} tokens but the model's context is {context} tokens",
            hint="shorten the prompt",
            param="messages" if hasattr(body, "messages") else "prompt",
        )
    room = context - prompt_len
    if body.token_limit() is None and "max_tokens" in defaults:
        room = min(room, defaults["max_tokens"])
    limit = max_tokens(body, cap, room=room)
    if prompt_len + limit > context:
        raise InvalidInputError(
            f"max_tokens {limit} plus the prompt's {prompt_len} tokens exceed the model's context of {context} tokens",
            hint=f"ask for at most {context - prompt_len} tokens",
            param="max_tokens",
        )
    if body.min_tokens > limit:
        raise InvalidInputError(
            f"min_tokens {body.min_tokens} is more than max_tokens {limit}", hint="lower min_tokens", param="min_tokens"
        )
    logit_bias = body.logit_bias or {}
    stop_token_ids = body.stop_token_ids or []
    for name, ids in (("logit_bias", logit_bias), ("stop_token_ids", stop_token_ids)):
        if any(not 0 <= token < vocab for token in ids):
            raise InvalidInputError(f"{name}: token ids must lie in [0, {vocab})", param=name)
    return SamplingParams(
        max_tokens=limit,
        temperature=body.temperature if "temperature" in given else defaults.get("temperature", body.temperature),
        top_p=body.top_p if "top_p" in given else defaults.get("top_p", body.top_p),
        seed=body.seed,
        stop=body.stop_list(),
        logprobs=logprobs,
        top_logprobs=top,
        ignore_eos=body.ignore_eos,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty,
        logit_bias=logit_bias,
        min_tokens=body.min_tokens,
        top_k=max(body.top_k, 0),
        stop_token_ids=stop_token_ids,
    )


async def respond(
    request: Request,
    body: Any,
    target: Target,
    prompts: list[list[int]],
    shape: Shape,
    *,
    logprobs: bool,
    top: int,
    structured: Structured | None = None,
    structured_param: str = "response_format",
) -> Any:
    """Submit ``body.n`` choices per prompt and answer with one JSON body or an SSE stream. A ``structured``
    output's grammar is compiled first (a 400 naming ``structured_param`` when it cannot be)."""
    engine = target.engine
    config = request.app.state.config
    check_prompt_tokens(config, prompts)
    cap = config.max_tokens_cap
    defaults = getattr(engine, "defaults", None)  # the model's generation config (native engine)
    vocab = len(engine.tokenizer)
    params = [
        sampling_params(
            body, len(p), engine.context_length, cap, logprobs=logprobs, top=top, vocab=vocab, defaults=defaults
        )
        for p in prompts
    ]
    if structured is not None:  # compiled off the event loop, or found in the engine's cache
        try:
            await asyncio.to_thread(engine.check_structured, structured)
        except InvalidInputError as err:
            raise InvalidInputError(err.message, hint=err.hint, param=structured_param) from None
        for p in params:
            p.structured = structured
    worst_case = body.n * sum(len(prompt) + p.max_tokens for prompt, p in zip(prompts, params, strict=True))
    reserve(request, sequences=len(prompts) * body.n, tokens=worst_case)  # --rate-limit-rpm/-tpm
    if body.stream:
        open_stream(request)  # --max-streams-per-key
    owner = _key_name(request)
    engine.check_room(len(prompts) * body.n, owner)  # every sequence of the request, before any is queued
    safety = request.app.state.safety  # output policy: redaction, blocklist, classifier (serve/safety.py)
    if target.adapter:
        await request.app.state.models.adapters.acquire(target.adapter)
    # no await between here and the last submission: an adapter acquired above cannot be evicted meanwhile
    streams: list[AsyncIterator[Delta]] = []
    try:
        for prompt, p in zip(prompts, params, strict=True):
            for choice in range(body.n):
                seeded = p if p.seed is None else SamplingParams(**{**p.__dict__, "seed": p.seed + choice})
                streams.append(
                    metered(request, safety.wrap(engine.generate(prompt, seeded, adapter=target.adapter, owner=owner)))
                )
    except BaseException:
        for stream in streams:
            await stream.aclose()
        raise
    request_id = f"{'chatcmpl' if shape.chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    prompt_tokens = sum(len(p) for p in prompts)
    annotate(request, adapter=target.adapter, prompt_tokens=prompt_tokens)  # log line, metrics, token limits
    identifiers = {k: getattr(body, k, None) for k in ("user", "safety_identifier")}
    annotate(request, **{k: v for k, v in identifiers.items() if v is not None})  # the end user, in the log line
    deadline = asyncio.get_running_loop().time() + config.request_timeout
    if not body.stream:
        tasks = [asyncio.ensure_future(collect(s)) for s in streams]
        gathered = asyncio.gather(*tasks)
        gone = asyncio.ensure_future(_client_gone(request.receive))
        try:
            async with asyncio.timeout_at(deadline):
                done, _ = await asyncio.wait((gathered, gone), return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise _deadline(config.request_timeout) from None
        finally:  # one choice failed, or the client left: the others are aborted rather than generated for nobody
            gone.cancel()
            for task in tasks:
                task.cancel()
        if gathered not in done:  # the client closed the connection: its choices were aborted above
            return Response(status_code=CLIENT_CLOSED)
        results = gathered.result()
        choices = [
            shape.choice(
                i, "".join(d.text for d in deltas), shape.logprobs(deltas), deltas[-1].finish_reason, stream=False
            )
            for i, deltas in enumerate(results)
        ]
        completion = sum(deltas[-1].completion_tokens for deltas in results)
        return JSONResponse(
            {
                "id": request_id,
                "object": shape.object,
                "created": created,
                "model": body.model,
                "choices": choices,
                "usage": _usage(prompt_tokens, completion),
            }
        )
    events = _merge(streams)
    try:
        async with asyncio.timeout_at(deadline):
            first = await anext(events)  # a request that never started answers 504, not an empty stream
    except TimeoutError:
        await events.aclose()
        raise _deadline(config.request_timeout) from None
    head = {"id": request_id, "object": shape.chunk_object, "created": created, "model": body.model}
    sse = _sse(
        request,
        head,
        shape,
        first,
        events,
        len(streams),
        prompt_tokens,
        body.include_usage(),
        deadline,
        config.request_timeout,
    )
    return StreamingResponse(sse, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _key_name(request: Request) -> str | None:
    """The name of the API key the access middleware authenticated (``None`` without auth): the engine shares
    its queue and batch fairly between keys (``engine.scheduler``)."""
    record = record_of(request)
    return record.extra.get("key") if record is not None else None


def _deadline(seconds: float) -> DeadlineError:
    return DeadlineError(
        f"the request did not finish within the server's timeout of {seconds:g} s",
        hint="ask for fewer tokens or retry when the server is less busy",
    )


async def _client_gone(receive: Receive) -> None:
    """Return when the client has closed the connection. The body was read already, so the server's ``receive`` has
    only ``http.disconnect`` left to give (uvicorn's, Ray Serve's, or a test client's once the response is sent): a
    non-streaming answer is otherwise generated to its end for nobody (streamed ones stop with Starlette's own
    disconnect watch)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _merge(streams: list[AsyncIterator[Delta]]) -> AsyncIterator[tuple[int, Delta]]:
    """(choice index, delta) from all streams as they come; closing it aborts every stream."""
    if len(streams) == 1:
        async with contextlib.aclosing(streams[0]) as stream:
            async for delta in stream:
                yield 0, delta
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[Delta]) -> None:
        try:
            async with contextlib.aclosing(stream):
                async for delta in stream:
                    queue.put_nowait((index, delta))
        except Exception as err:
            queue.put_nowait((index, err))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            index, item = await queue.get()
            if isinstance(item, Exception):
                raise item
            yield index, item
            remaining -= item.finish_reason is not None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _sse(
    request: Request,
    head: dict[str, Any],
    shape: Shape,
    first: tuple[int, Delta],
    events: AsyncIterator[tuple[int, Delta]],
    n: int,
    prompt_tokens: int,
    include_usage: bool,
    deadline: float,
    timeout: float,
) -> AsyncIterator[str]:
    """OpenAI's chunk stream: a role chunk per choice (chat), one chunk per token with text, ``[DONE]``. An error
    after the first chunk is an error event, and the request is logged and counted with the error's status."""
    completion = [0] * n
    offsets = [0] * n
    parsers = [shape.parser() for _ in range(n)]
    if shape.chat:
        for index in range(n):
            yield sse_data(
                head | {"choices": [{"index": index, "delta": _message(""), "logprobs": None, "finish_reason": None}]}
            )
    try:
        pending: tuple[int, Delta] | None = first
        while pending is not None:
            index, delta = pending
            completion[index] = delta.completion_tokens
            logprobs = shape.logprobs([delta], offsets[index])
            offsets[index] += len(delta.text)
            for choice in shape.stream_choices(index, delta, logprobs, parsers[index]):
                yield sse_data(head | {"choices": [choice]})
            async with asyncio.timeout_at(deadline):
                pending = await anext(events, None)
    except (TimeoutError, LeptonkitError) as err:  # the deadline, or one choice failed (engine.base.SequenceError)
        error = _deadline(timeout) if isinstance(err, TimeoutError) else err
        annotate(request, status=error.http_status, error=error.error_type)
        yield sse_data(error_body(str(error), error.error_type, error.param, error.http_status))
    finally:
        await events.aclose()
    if include_usage:
        yield sse_data(head | {"choices": [], "usage": _usage(prompt_tokens, sum(completion))})
    yield DONE
