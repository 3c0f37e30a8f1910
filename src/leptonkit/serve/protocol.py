"""Request bodies of the OpenAI API (and leptonkit's task routes), as pydantic models with OpenAI's field names.

A field this server accepts is one it honours. The OpenAI bodies (chat, completions, embeddings, and what they nest)
declare exactly those fields: any other field, one OpenAI defines that leptonkit does not implement (``suffix``,
``audio``, ``prediction``...) or a vendor extension it does not implement, is a 400 naming it; a field sent as
``null`` counts as left out. A known field of the wrong type or out of range is a 400 naming the field. Strings must
be encodable as UTF-8 (a lone surrogate such as ``"\\ud800"`` is valid JSON but not text).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

MAX_STOP = 16


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"text is not valid UTF-8 (character {err.start} is a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_utf8)]


def _not_stored(value: bool | None) -> bool | None:
    if value:
        raise ValueError("store true is not supported: this server stores no completions or responses")
    return value


NotStored = Annotated[bool | None, AfterValidator(_not_stored)]  # ``store``: false or left out


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _OpenAIBody(BaseModel):
    """An OpenAI body: undeclared fields are refused (``extra_forbidden``, a 400 naming the field); a field sent as
    null is one left out (its default), as OpenAI reads it."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class StreamOptions(_OpenAIBody):
    include_usage: bool = False


class ContentPart(_OpenAIBody):
    type: Literal["text"]
    text: Text

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type", "text") != "text":
            raise ValueError(f"content parts of type {data['type']!r} are not supported: send text parts")
        return data


FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]  # OpenAI's rule for function names


class ToolCallFunction(_OpenAIBody):
    name: FunctionName
    arguments: Text  # JSON text, as the model wrote it


class ToolCall(_OpenAIBody):
    """A call in an assistant message sent back to the model (``serve.tool_calls`` renders it)."""

    id: Text
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(_OpenAIBody):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None
    name: Text | None = None  # given to the chat template, which may use it
    tool_calls: list[ToolCall] | None = None  # assistant messages
    tool_call_id: Text | None = None  # tool messages: the call they answer

    @model_validator(mode="after")
    def _tool_fields(self) -> ChatMessage:
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class _Sampling(_OpenAIBody):
    """Fields shared by chat and text completions (vLLM's extensions among them: ``top_k``, ``repetition_penalty``,
    ``min_tokens``, ``stop_token_ids``, ``ignore_eos``; their meanings are in ``engine.base.SamplingParams``)."""

    model: Text
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)  # int64, as vLLM: larger seeds are a 400
    stop: Text | list[Text] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False  # vLLM's extension, used by benchmarks to force a fixed output length
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[int, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None  # token id (as a string): bias
    repetition_penalty: float = Field(1.0, gt=0.0)
    top_k: int = Field(0, ge=-1)  # 0 or -1: every token
    min_tokens: int = Field(0, ge=0)
    stop_token_ids: list[int] | None = None
    user: Text | None = None  # an end user's identifier: written to the request's log line
    service_tier: Literal["auto", "default"] | None = None  # the one tier this server has

    @field_validator("stream_options")
    @classmethod
    def _streamed(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if value is not None and info.data.get("stream") is not True:
            raise ValueError("stream_options needs stream: true")
        return value

    def stop_list(self) -> list[str]:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings")
        return stop

    @model_validator(mode="after")
    def _check_stop(self) -> _Sampling:
        self.stop_list()
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class FunctionDefinition(_OpenAIBody):
    name: FunctionName
    description: Text | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema; left out: no arguments
    strict: bool | None = None  # the arguments always match the schema (constrained decoding) whatever it says


class Tool(_OpenAIBody):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionChoice(_OpenAIBody):
    name: FunctionName


class NamedToolChoice(_OpenAIBody):
    type: Literal["function"]
    function: FunctionChoice


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchema(_OpenAIBody):
    """``response_format.json_schema``: the schema the output must match, enforced while decoding."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: FunctionName
    description: Text | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None  # true: no properties beyond the schema's (xgrammar's strict mode)


class ResponseFormat(_OpenAIBody):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is given with type json_schema, and only then")
        return self


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(..., min_length=1)
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20)
    modalities: list[Literal["text"]] | None = None  # text out only: "audio" is a 400
    store: NotStored = None
    safety_identifier: Text | None = None  # written to the request's log line, as ``user``
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None  # default: auto with tools, none without
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _with_logprobs(cls, value: int, info: ValidationInfo) -> int:
        if value and info.data.get("logprobs") is not True:
            raise ValueError("top_logprobs needs logprobs: true")
        return value


class CompletionRequest(_Sampling):
    prompt: Text | list[Text] | list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False  # echo true is a 400
    best_of: int | None = Field(None, ge=1)  # only as many as n: no choices are generated and dropped

    @model_validator(mode="after")
    def _check_prompt(self) -> CompletionRequest:
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("prompt is an empty list")
        return self

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo true is not supported")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_n(cls, value: int | None, info: ValidationInfo) -> int | None:
        n = info.data.get("n", 1)
        if value is not None and value != n:
            raise ValueError(f"best_of {value} other than n ({n}) is not supported: no choices are generated to drop")
        return value

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: a string or a list of token ids."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        if all(isinstance(p, int) for p in self.prompt):
            return [list(self.prompt)]
        return list(self.prompt)


class ResponseContentPart(_OpenAIBody):
    type: Literal["input_text", "output_text"]
    text: Text
    annotations: list[Any] | None = None  # an earlier response's output sent back: these describe it, nothing more
    logprobs: list[Any] | None = None


class _InputItem(_OpenAIBody):
    """An input item of the Responses API; an earlier response's output item sent back also has its ``id`` and
    ``status``, which describe it and change nothing."""

    id: Text | None = None
    status: Text | None = None


class ResponseMessage(_InputItem):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: Text | list[ResponseContentPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ResponseFunctionCall(_InputItem):
    type: Literal["function_call"]
    call_id: Text
    name: FunctionName
    arguments: Text


class ResponseFunctionCallOutput(_InputItem):
    type: Literal["function_call_output"]
    call_id: Text
    output: Text


_ITEMS = {"message": "ResponseMessage", "function_call": "ResponseFunctionCall",
          "function_call_output": "ResponseFunctionCallOutput"}  # fmt: skip


def _item_type(item: Any) -> str | None:
    """An input item's model (a message may leave its type out); the tags are class names, which ``field_path``
    leaves out of a refusal's ``param``."""
    kind = item.get("type", "message") if isinstance(item, dict) else getattr(item, "type", "message")
    return _ITEMS.get(kind) if isinstance(kind, str) else None  # a list or an object as type: not an item


ResponseItem = Annotated[
    Annotated[ResponseMessage, Tag("ResponseMessage")]
    | Annotated[ResponseFunctionCall, Tag("ResponseFunctionCall")]
    | Annotated[ResponseFunctionCallOutput, Tag("ResponseFunctionCallOutput")],
    Discriminator(
        _item_type,
        custom_error_type="input_item",
        custom_error_message="input items here are messages, function_call and function_call_output items",
    ),
]


class ResponseFunctionTool(_OpenAIBody):
    type: Literal["function"]
    name: FunctionName
    description: Text | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseNamedToolChoice(_OpenAIBody):
    type: Literal["function"]
    name: FunctionName


class ResponseTextFormat(_OpenAIBody):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: FunctionName | None = None
    description: Text | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseTextFormat:
        if self.type == "json_schema" and (self.name is None or self.schema_ is None):
            raise ValueError("a json_schema format needs its name and schema")
        return self


class ResponseText(_OpenAIBody):
    format: ResponseTextFormat | None = None


class ResponsesRequest(_OpenAIBody):
    """``POST /v1/responses``: text in, text or tool calls out (``routes.responses``). Nothing is stored: no
    ``previous_response_id``, and ``store: true`` is a 400."""

    model: Text
    input: Text | list[ResponseItem]
    instructions: Text | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stream: bool = False
    tools: list[ResponseFunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ResponseNamedToolChoice | None = None
    parallel_tool_calls: bool = True
    text: ResponseText | None = None
    store: NotStored = None
    metadata: dict[str, Text] | None = None  # given back in the response


class EmbeddingRequest(_OpenAIBody):
    model: Text
    input: Text | list[Text] = Field(..., min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)  # the model's own size only (its vectors are not truncatable)
    user: Text | None = None  # written to the request's log line

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class TaskRequest(_Body):
    """``/v1/classify`` and ``/v1/ner``: one string or a list of them."""

    model: Text
    input: Text | list[Text] = Field(..., min_length=1)
    explain: bool = False  # word attributions with each result (leptonkit.explain.serving)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class AdapterRequest(_Body):
    """``POST /v1/adapters``: load a registered adapter under ``name`` (default: its registry name)."""

    ref: Text
    name: Text | None = None


class TokenizeRequest(_OpenAIBody):
    """``POST /tokenize`` (vLLM's): a ``prompt``, or ``messages`` through the model's chat template.
    ``add_special_tokens`` defaults to true for a prompt and false for messages (the template writes them)."""

    model: Text
    prompt: Text | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    add_special_tokens: bool | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    return_token_strs: bool = False


class DetokenizeRequest(_OpenAIBody):
    """``POST /detokenize`` (vLLM's): token ids to text."""

    model: Text
    tokens: list[int]


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none"}


def field_path(location: tuple[Any, ...]) -> str:
    """A validation error's location as the request field it names: ``messages[0].content[1]``. pydantic puts the
    member of a union it tried into the location (``str``, ``list[ContentPart]``, ``function-after[...]``, a model's
    class name); those are no field of the request and are left out."""
    path = ""
    for part in location[1:] if location[:1] == ("body",) else location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (part in _TYPE_NAMES or part[:1].isupper() or any(c in part for c in "[]()-")):
            path += f".{part}" if path else part
    return path


def best_error(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The error to report: the first one, or where it is one member of a union's failures, the failure that names
    the deepest field under it (``messages[0].content[1]`` rather than ``messages[0].content`` is not a string)."""
    first = errors[0]
    prefix = field_path(first.get("loc", ()))
    under = [e for e in errors if field_path(e.get("loc", ())).startswith(prefix)]
    return max(under, key=lambda e: len(field_path(e.get("loc", ()))))


def error_body(message: str, error_type: str, param: str | None = None, code: Any = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
