"""Tool calling for chat models: tools into the prompt, a grammar for the calls, calls out of the generated text.

The wire format of a call is Hermes' (Qwen 2.5 and NousResearch Hermes templates use it)::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

- **Prompt.** A chat template that renders tools itself (it mentions ``tools``) gets them through
  ``apply_chat_template(..., tools=...)``, with assistant ``tool_calls`` and ``tool`` messages as transformers
  passes them. A template that does not (SmolLM2's) gets :func:`tools_prompt` in its system message, the calls of
  earlier assistant turns written in the format above and each tool result as a user turn inside
  ``<tool_response>`` tags, as Qwen 2.5's template renders them.
- **Grammar.** Every request with tools (``tool_choice`` not ``none``) decodes under an xgrammar structural tag
  (:func:`tool_grammar`): ``auto`` lets the model write text until ``<tool_call>`` and then holds it to a call of a
  given function whose arguments match its JSON schema; ``required`` starts the output with one call or more (one
  with ``parallel_tool_calls: false``); a named function, exactly one call of it. So a call always parses.
- **Parsing.** :class:`ToolCallParser` splits the output, as it streams, into content and calls, and gives
  OpenAI's message deltas: a call's id, type and name first, then its ``function.arguments`` as they are generated.
  A non-streamed choice is the same parser fed the whole text (:func:`parse`).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from leptonkit.errors import InvalidInputError
from leptonkit.serve.engine import grammar
from leptonkit.serve.engine.base import Structured

BEGIN, END = "<tool_call>", "</tool_call>"
CALL_PREFIX = BEGIN + '\n{"name": "'  # then the name, ARGUMENTS_PREFIX, the arguments, CALL_END
ARGUMENTS_PREFIX = '", "arguments": '
CALL_END = "}\n" + END
NO_PARAMETERS = {"type": "object", "properties": {}}
MAX_ARGUMENT_WHITESPACE = 2  # consecutive blanks inside arguments: a sampled model cannot fill its budget with them
_HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')

TOOLS_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML \
tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def parameters(tool: Any) -> dict[str, Any]:
    return tool.function.parameters if tool.function.parameters is not None else NO_PARAMETERS


def check(tools: list[Any] | None, tool_choice: Any, messages: list[Any]) -> None:
    """400s naming the field: a function's parameters the grammar engine cannot compile, two functions of one name,
    a ``tool_choice`` that names no given function (or asks for a call without tools), a ``tool`` message whose
    ``tool_call_id`` answers no earlier call."""
    names = set()
    for i, tool in enumerate(tools or []):
        param = f"tools[{i}].function"
        if tool.function.name in names:
            raise InvalidInputError(f"two tools are named {tool.function.name}", param=f"{param}.name")
        names.add(tool.function.name)
        try:
            grammar.check(Structured("json_schema", json.dumps(parameters(tool))))
        except InvalidInputError as err:
            raise InvalidInputError(err.message, hint=err.hint, param=f"{param}.parameters") from None
    named = getattr(tool_choice, "function", None)
    if named is not None and named.name not in names:
        given = ", ".join(sorted(names)) or "no tools"
        raise InvalidInputError(
            f"tool_choice names function {named.name}, which is not among the tools ({given})", param="tool_choice"
        )
    if tool_choice == "required" and not names:
        raise InvalidInputError("tool_choice required needs tools", hint="send tools", param="tool_choice")
    calls: set[str] = set()
    for i, message in enumerate(messages):
        calls.update(call.id for call in message.tool_calls or [])
        if message.role == "tool" and message.tool_call_id not in calls:
            raise InvalidInputError(
                f"tool message {i} answers tool_call_id {message.tool_call_id!r}, which no earlier assistant message "
                "called",
                hint="send the assistant message with its tool_calls before the tool messages that answer them",
                param=f"messages[{i}].tool_call_id",
            )


def uses_tools(tools: list[Any] | None, tool_choice: Any) -> bool:
    return bool(tools) and tool_choice != "none"


def renders_tools(tokenizer: Any) -> bool:
    """Whether the model's chat template renders ``tools`` itself."""
    template = tokenizer.chat_template
    return "tools" in (json.dumps(template) if isinstance(template, dict) else template or "")


def conversation(tokenizer: Any, messages: list[Any], tools: list[Any] | None) -> tuple[list[dict], dict[str, Any]]:
    """The messages for ``apply_chat_template`` and its extra keyword arguments (``tools`` where the template
    renders them; ``tools`` is None when the request's ``tool_choice`` is ``none``)."""
    native = renders_tools(tokenizer)
    ids = {call.id: call.function.name for m in messages for call in m.tool_calls or []}
    rendered: list[dict] = []
    for m in messages:
        entry = {"role": m.role, "content": m.text()} | ({"name": m.name} if m.name else {})
        if m.tool_calls and native:
            entry["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": _loads(c)}}
                for c in m.tool_calls
            ]
        elif m.tool_calls:
            calls = [format_call(c.function.name, c.function.arguments) for c in m.tool_calls]
            entry["content"] = "\n".join([entry["content"], *calls] if entry["content"] else calls)
        if m.role == "tool" and native:
            entry |= {"tool_call_id": m.tool_call_id, "name": ids[m.tool_call_id]}
        elif m.role == "tool":
            entry = {"role": "user", "content": f"<tool_response>\n{m.text()}\n</tool_response>"}
        rendered.append(entry)
    specs = [{"type": "function", "function": t.function.model_dump(exclude_none=True)} for t in tools or []]
    if not specs:
        return rendered, {}
    if native:
        return rendered, {"tools": specs}
    prompt = TOOLS_PROMPT.format(tools="\n".join(json.dumps(s, ensure_ascii=False) for s in specs))
    if rendered and rendered[0]["role"] in ("system", "developer"):
        rendered[0] = rendered[0] | {"content": f"{rendered[0]['content']}\n\n{prompt}"}
    else:
        rendered.insert(0, {"role": "system", "content": prompt})
    return rendered, {}


def _loads(call: Any) -> Any:
    try:
        return json.loads(call.function.arguments)
    except ValueError:
        return call.function.arguments


def format_call(name: str, arguments: str) -> str:
    return f"{CALL_PREFIX}{name}{ARGUMENTS_PREFIX}{arguments}{CALL_END}"


def tool_grammar(tools: list[Any], tool_choice: Any, parallel: bool) -> Structured:
    """The structural tag that holds the output to calls of ``tools`` as ``tool_choice`` asks (see the module)."""
    from xgrammar.structural_tag import (
        JSONSchemaFormat,
        StructuralTag,
        TagFormat,
        TagsWithSeparatorFormat,
        TriggeredTagsFormat,
    )

    def tag(tool: Any) -> TagFormat:
        content = JSONSchemaFormat(json_schema=parameters(tool), max_whitespace_cnt=MAX_ARGUMENT_WHITESPACE)
        return TagFormat(begin=CALL_PREFIX + tool.function.name + ARGUMENTS_PREFIX, content=content, end=CALL_END)

    named = getattr(tool_choice, "function", None)
    if named is not None:
        fmt: Any = tag(next(t for t in tools if t.function.name == named.name))
    elif tool_choice == "required":
        tags = [tag(t) for t in tools]
        # calls back to back: a separator would have to be followed by another call, where the model may stop
        fmt = TagsWithSeparatorFormat(tags=tags, separator="", at_least_one=True, stop_after_first=not parallel)
    else:
        fmt = TriggeredTagsFormat(triggers=[BEGIN], tags=[tag(t) for t in tools], stop_after_first=not parallel)
    return Structured("structural_tag", StructuralTag(format=fmt).model_dump_json())


def _partial(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that begins ``marker``."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class ToolCallParser:
    """Content and tool calls out of one choice's text, fed as it is generated. :meth:`feed` returns OpenAI message
    deltas (``{"content": ...}`` or ``{"tool_calls": [...]}``); text that could still turn out to begin a call, or
    to end one, is held back until it is known."""

    def __init__(self) -> None:
        self.buffer = ""
        self.calls: list[dict[str, Any]] = []  # {"id", "type", "function": {"name", "arguments"}}
        self.content = ""
        self._in_call = False
        self._named = False

    def feed(self, text: str, final: bool = False) -> list[dict[str, Any]]:
        self.buffer += text
        out: list[dict[str, Any]] = []
        while self._in_call or BEGIN in self.buffer:
            if not self._in_call:
                start = self.buffer.index(BEGIN)
                self._say(self.buffer[:start].rstrip(), out)
                self.buffer, self._in_call, self._named = self.buffer[start + len(BEGIN) :], True, False
            elif not self._named:
                match = _HEADER.match(self.buffer)
                if match is None:
                    if final:  # not a call after all (the output ran out): it is text
                        self._in_call = False
                        self._say(BEGIN + self.buffer, out)
                        self.buffer = ""
                    break
                name = json.loads(f'"{match.group(1)}"')
                call_id = f"call_{uuid.uuid4().hex[:24]}"
                head = {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                self.calls.append({**head, "function": dict(head["function"])})
                out.append({"tool_calls": [{"index": len(self.calls) - 1, **head}]})
                self.buffer, self._named = self.buffer[match.end() :], True
            else:
                end = self.buffer.find(END)
                if end >= 0:
                    body = self.buffer[:end].rstrip()
                    self._arguments(body[:-1].rstrip() if body.endswith("}") else body, out)
                    self.buffer, self._in_call = self.buffer[end + len(END) :], False
                    continue
                self._arguments(self.buffer[: self._held()], out)
                break
        if not self._in_call:
            # held: the start of a call marker and the blanks before it (dropped if a call follows)
            ready = self.buffer if final else self.buffer[: len(self.buffer) - _partial(self.buffer, BEGIN)].rstrip()
            self._say(ready, out)
            self.buffer = self.buffer[len(ready) :]
        return out

    def _held(self) -> int:
        """Where the arguments seen so far may end: before a last ``}`` followed only by blanks and the start of
        ``</tool_call>`` (the call's own closing brace), else before trailing blanks."""
        brace = self.buffer.rfind("}")
        if brace >= 0:
            rest = self.buffer[brace + 1 :].lstrip()
            if END.startswith(rest):
                return brace
        return len(self.buffer.rstrip())

    def _arguments(self, upto: str, out: list[dict[str, Any]]) -> None:
        function = self.calls[-1]["function"]
        new = upto[len(function["arguments"]) :]
        if new:
            function["arguments"] += new
            out.append({"tool_calls": [{"index": len(self.calls) - 1, "function": {"arguments": new}}]})

    def _say(self, text: str, out: list[dict[str, Any]]) -> None:
        if not self.content:
            text = text.lstrip()
        if self.calls and not text.strip():
            return
        if text:
            self.content += text
            out.append({"content": text})


def parse(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """A whole output's content (None when there is none) and tool calls."""
    parser = ToolCallParser()
    parser.feed(text, final=True)
    return parser.content or None, parser.calls
