"""``POST /v1/responses``: OpenAI's Responses API for text in and text (or tool calls) out, answered by the chat
pipeline (``routes.openai.chat``) and translated both ways.

A request becomes a chat request: ``instructions`` the system message, ``input`` the messages (a string is one user
message; ``function_call`` items are an assistant's tool calls and ``function_call_output`` items the tool messages
that answer them), ``max_output_tokens`` the token limit, ``text.format`` the ``response_format``, tools and
``tool_choice`` in their chat shape. The chat completion becomes a response: its text an ``output_text`` message
item, each tool call a ``function_call`` item, ``max_output_tokens`` reached the status ``incomplete``. Streamed, the
chat chunks become the Responses events, in OpenAI's order (``response.created``, ``response.output_item.added``,
``response.output_text.delta``..., ``response.completed``). A refusal names the Responses field (``input[2]``,
``max_output_tokens``, ``text.format``).

Responses are not stored: there is no ``GET /v1/responses/{id}`` (404) and no ``previous_response_id`` (a 400, as
every field this route does not implement).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from leptonkit.errors import InvalidInputError, LeptonkitError
from leptonkit.serve.middleware import CLIENT_CLOSED
from leptonkit.serve.parsing import JsonRoute
from leptonkit.serve.protocol import (
    ChatCompletionRequest,
    ResponseFunctionCall,
    ResponseFunctionCallOutput,
    ResponsesRequest,
    best_error,
    field_path,
)
from leptonkit.serve.routes.openai import chat
from leptonkit.serve.sse import sse_data

router = APIRouter(route_class=JsonRoute)
ENDPOINT = "/v1/responses"


@router.post(ENDPOINT)
async def create_response(body: ResponsesRequest, request: Request) -> Any:
    chat_body, origins = _chat_request(body)
    try:
        answer = await chat(request, chat_body, ENDPOINT)
    except LeptonkitError as err:
        err.param = _responses_param(err.param, origins)
        raise
    if answer.status_code == CLIENT_CLOSED:  # the client left before the answer: nobody reads one
        return answer
    head = _head(body)
    if isinstance(answer, StreamingResponse):
        events = _events(head, answer.body_iterator, origins)
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    completion = json.loads(answer.body)
    choice = completion["choices"][0]
    return JSONResponse(_finished(head, _output(choice["message"]), choice["finish_reason"], completion["usage"]))


def _chat_request(body: ResponsesRequest) -> tuple[ChatCompletionRequest, list[str]]:
    """The chat request, and for each of its messages the Responses field it came from."""
    messages: list[dict[str, Any]] = []
    origins: list[str] = []
    if body.instructions is not None:
        messages.append({"role": "system", "content": body.instructions})
        origins.append("instructions")
    if isinstance(body.input, str):
        messages.append({"role": "user", "content": body.input})
        origins.append("input")
    for i, item in enumerate([] if isinstance(body.input, str) else body.input):
        if isinstance(item, ResponseFunctionCall):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)  # one assistant turn, several calls
                continue
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, ResponseFunctionCallOutput):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
        else:
            messages.append({"role": item.role, "content": item.text()})
        origins.append(f"input[{i}]")
    fields: dict[str, Any] = {"model": body.model, "messages": messages, "stream": body.stream}
    given = body.model_fields_set
    fields |= {name: getattr(body, name) for name in ("temperature", "top_p", "parallel_tool_calls") if name in given}
    if body.max_output_tokens is not None:
        fields["max_completion_tokens"] = body.max_output_tokens
    if body.stream:
        fields["stream_options"] = {"include_usage": True}  # for response.completed's usage
    if body.tools is not None:
        fields["tools"] = [
            {"type": "function", "function": t.model_dump(exclude={"type"}, exclude_none=True)} for t in body.tools
        ]
    if body.tool_choice is not None:
        choice = body.tool_choice
        fields["tool_choice"] = (
            choice if isinstance(choice, str) else {"type": "function", "function": {"name": choice.name}}
        )
    fmt = body.text.format if body.text is not None else None
    if fmt is not None and fmt.type == "json_schema":
        schema = {"name": fmt.name, "schema": fmt.schema_, "strict": fmt.strict, "description": fmt.description}
        fields["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt is not None:
        fields["response_format"] = {"type": fmt.type}
    try:
        return ChatCompletionRequest.model_validate(fields), origins
    except ValidationError as err:  # what the chat request refuses, named as the Responses field
        error = best_error(err.errors())
        where = _responses_param(field_path(error.get("loc", ())), origins)
        raise InvalidInputError(f"{where}: {error.get('msg')}", param=where) from None


_RENAMES = {
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
    "prompt": "input",
}


def _responses_param(param: str | None, origins: list[str]) -> str | None:
    """A chat request's field as the Responses field it came from: ``messages[3].tool_call_id`` is ``input[2]``."""
    if param is None:
        return None
    found = re.match(r"messages\[(\d+)\]", param)
    if found:
        index = int(found.group(1))
        return origins[index] if index < len(origins) else "input"
    if param.startswith("tools[") and ".function" in param:
        return param.replace(".function", "", 1)
    head, dot, rest = param.partition(".")
    return _RENAMES.get(head, head) + dot + rest


def _head(body: ResponsesRequest) -> dict[str, Any]:
    """The fields every response object of this request has, as OpenAI's ``Response`` carries them."""
    given = body.model_fields_set
    choice = body.tool_choice or ("auto" if body.tools else "none")
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "model": body.model,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "temperature": body.temperature if "temperature" in given else None,
        "top_p": body.top_p if "top_p" in given else None,
        "tools": [t.model_dump(by_alias=True, exclude_none=True) for t in body.tools or []],
        "tool_choice": choice.model_dump() if hasattr(choice, "model_dump") else choice,
        "parallel_tool_calls": body.parallel_tool_calls,
        "text": {"format": body.text.format.model_dump(by_alias=True, exclude_none=True)}
        if body.text is not None and body.text.format is not None
        else {"format": {"type": "text"}},
        "metadata": body.metadata or {},
        "store": False,
        "previous_response_id": None,
        "reasoning": None,
        "truncation": "disabled",
        "error": None,
    }


def _message_item(text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "type": "message",
        "id": f"msg_{uuid.uuid4().hex}",
        "status": status,
        "role": "assistant",
        "content": [part] if status == "completed" else [],
    }


def _call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    function = call["function"]
    return {
        "type": "function_call",
        "id": f"fc_{uuid.uuid4().hex}",
        "call_id": call["id"],
        "name": function["name"],
        "arguments": function["arguments"],
        "status": status,
    }


def _output(message: dict[str, Any]) -> list[dict[str, Any]]:
    output = [_message_item(message["content"])] if message.get("content") else []
    return output + [_call_item(call) for call in message.get("tool_calls") or []]


def _finished(head: dict[str, Any], output: list[dict], finish: str | None, usage: dict[str, int]) -> dict[str, Any]:
    incomplete = finish == "length"
    return head | {
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "output": output,
        "usage": {
            "input_tokens": usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["total_tokens"],
        },
    }


class _EventWriter:
    """Responses stream events with their ``sequence_number``, as server-sent events."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> str:
        event = {"type": kind, "sequence_number": self.sequence} | fields
        self.sequence += 1
        return sse_data(event, event=kind)


async def _events(head: dict[str, Any], chunks: AsyncIterator[Any], origins: list[str]) -> AsyncIterator[str]:
    """The Responses events for the chat completion chunks of one choice."""
    emit = _EventWriter()
    yield emit("response.created", response=head | {"status": "in_progress", "output": [], "usage": None})
    yield emit("response.in_progress", response=head | {"status": "in_progress", "output": [], "usage": None})
    output: list[dict[str, Any]] = []
    open_item: dict[str, Any] | None = None  # the item being generated
    text = ""
    finish = None
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    def close() -> list[str]:
        nonlocal open_item
        if open_item is None:
            return []
        index, item, events = len(output), open_item, []
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events += [
                emit("response.output_text.done", **ids, text=text, logprobs=[]),
                emit("response.content_part.done", **ids, part=part),
            ]
            item = item | {"status": "completed", "content": [part]}
        else:
            item = item | {"status": "completed"}
            events.append(
                emit(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        output.append(item)
        open_item = None
        return [*events, emit("response.output_item.done", output_index=index, item=item)]

    async with contextlib.aclosing(chunks):
        async for raw in chunks:
            for line in str(raw).splitlines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line.removeprefix("data: "))
                if "error" in chunk:  # the chat stream failed after it started
                    for event in close():
                        yield event
                    error = chunk["error"]
                    param = _responses_param(error.get("param"), origins)
                    yield emit("error", code=error.get("code"), message=error["message"], param=param)
                    return
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices", []):
                    delta = choice.get("delta", {})
                    if delta.get("content"):
                        if open_item is None or open_item["type"] != "message":
                            for event in close():
                                yield event
                            open_item, text = _message_item("", "in_progress"), ""
                            yield emit("response.output_item.added", output_index=len(output), item=open_item)
                            yield emit(
                                "response.content_part.added",
                                item_id=open_item["id"],
                                output_index=len(output),
                                content_index=0,
                                part={"type": "output_text", "text": "", "annotations": []},
                            )
                        text += delta["content"]
                        yield emit(
                            "response.output_text.delta",
                            item_id=open_item["id"],
                            output_index=len(output),
                            content_index=0,
                            delta=delta["content"],
                            logprobs=[],
                        )
                    for call in delta.get("tool_calls") or []:
                        if "id" in call:  # a new call: its name first
                            for event in close():
                                yield event
                            open_item = _call_item(call, "in_progress")
                            yield emit("response.output_item.added", output_index=len(output), item=open_item)
                        piece = call["function"].get("arguments", "")
                        if piece and open_item is not None:
                            open_item["arguments"] += piece
                            yield emit(
                                "response.function_call_arguments.delta",
                                item_id=open_item["id"],
                                output_index=len(output),
                                delta=piece,
                            )
                    finish = choice.get("finish_reason") or finish
    for event in close():
        yield event
    final = _finished(head, output, finish, usage)
    yield emit("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)
