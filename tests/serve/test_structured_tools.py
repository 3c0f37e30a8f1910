"""Structured outputs, tool calls and the Responses API through the ``openai`` package, against a real server with
the real SmolLM2-135M-Instruct: the grammar holds a sampled small model to the schema, every time."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import pytest
from pydantic import BaseModel

from tests.serve.conftest import serve_thread

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
# nested objects, enums and arrays; every string and number bounded, so that each output fits its token budget
PET = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "size": {"enum": ["small", "medium", "large"]},
        "colours": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3},
        "owner": {
            "type": "object",
            "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 99}, "verified": {"type": "boolean"}},
            "required": ["age", "verified"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "size", "colours", "owner"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def smol_server(smollm2):
    home, _ = smollm2
    with serve_thread(models=["smol"], home=str(home), dtype="float32", max_num_seqs=64, threads=2) as server:
        yield server


@pytest.fixture(scope="module")
def client(smol_server):
    from openai import OpenAI

    return OpenAI(base_url=f"{smol_server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_a_tool_call_round_trip(client):
    first = client.chat.completions.create(
        model="smol",
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,  # SmolLM2 would call it again and again
        max_tokens=64,
        temperature=0,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None and len(choice.message.tool_calls) >= 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])

    answer = "It is 21 degrees and sunny in Paris."
    messages = [
        *QUESTION,
        choice.message.model_dump(exclude_none=True),
        *[{"role": "tool", "tool_call_id": c.id, "content": answer} for c in choice.message.tool_calls],
    ]
    final = client.chat.completions.create(
        model="smol", messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=12, temperature=0
    )
    assert final.choices[0].message.tool_calls is None
    assert final.choices[0].message.content and final.choices[0].finish_reason in ("stop", "length")
    # the prompt holds the question, the call and the tool's answer
    question = client.chat.completions.create(model="smol", messages=QUESTION, max_tokens=1)
    assert final.usage.prompt_tokens > question.usage.prompt_tokens + first.usage.completion_tokens


def test_a_streamed_tool_call_gives_argument_deltas_that_join_into_json(client):
    stream = client.chat.completions.create(
        model="smol",
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=64,
        temperature=0,
        stream=True,
    )
    chunks = [chunk for chunk in stream if chunk.choices]
    head, *pieces = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []]
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]
    assert head.index == 0 and head.id.startswith("call_") and head.function.name == "get_weather"
    assert len(pieces) > 2 and all(p.index == 0 and p.id is None for p in pieces)  # arguments as they come
    arguments = "".join(p.function.arguments for p in [head, *pieces])
    jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])


def test_parse_returns_a_pydantic_object(client):
    class City(BaseModel):
        name: str
        country: str

    completion = client.chat.completions.parse(
        model="smol",
        messages=[{"role": "user", "content": "Name a city in Europe."}],
        response_format=City,
        max_tokens=40,
        temperature=0,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, City) and parsed.name and parsed.country


def test_json_schema_output_validates_50_times_out_of_50_at_temperature_1(client):
    def ask(n: int) -> list:
        completion = client.chat.completions.create(
            model="smol",
            messages=[{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "A pet?"}],
            response_format={"type": "json_schema", "json_schema": {"name": "pet", "schema": PET, "strict": True}},
            temperature=1.0,
            n=n,
            max_tokens=128,  # the longest outputs take about 80 tokens (odd names split into single letters)
        )
        return completion.choices

    with ThreadPoolExecutor(4) as pool:  # 50 sequences decode in one batch
        choices = [c for batch in pool.map(ask, [13, 13, 12, 12]) for c in batch]
    assert len(choices) == 50
    outputs = [json.loads(c.message.content) for c in choices]
    for output in outputs:
        jsonschema.validate(output, PET)
    assert {c.finish_reason for c in choices} == {"stop"}
    assert len({json.dumps(o, sort_keys=True) for o in outputs}) > 10  # sampled, not one answer 50 times


def test_responses_create_plain_and_streamed(client):
    response = client.responses.create(
        model="smol", input="What is the capital of France?", max_output_tokens=16, temperature=0
    )
    assert response.object == "response" and response.status in ("completed", "incomplete")
    assert response.output_text and response.usage.output_tokens <= 16
    events = list(
        client.responses.create(
            model="smol", input="What is the capital of France?", max_output_tokens=16, temperature=0, stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == events[-1].response.output_text == response.output_text  # greedy: the same text


def test_responses_tool_call_and_structured_output(client):
    tool = {"type": "function", **WEATHER["function"]}
    called = client.responses.create(
        model="smol", input="What is the weather in Rome?", tools=[tool], tool_choice="required",
        max_output_tokens=64, temperature=0, parallel_tool_calls=False,
    )  # fmt: skip
    (call,) = [item for item in called.output if item.type == "function_call"][:1]
    jsonschema.validate(json.loads(call.arguments), tool["parameters"])
    answer = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}
    question = {"role": "user", "content": "What is the weather in Rome?"}
    follow_up = client.responses.create(
        model="smol", input=[question, call.model_dump(exclude_none=True), answer], tools=[tool],
        tool_choice="none", max_output_tokens=8, temperature=0,
    )  # fmt: skip
    assert follow_up.output_text and follow_up.usage.input_tokens > called.usage.output_tokens  # the call is in it
    shaped = client.responses.create(
        model="smol",
        input="Describe a pet.",
        text={"format": {"type": "json_schema", "name": "pet", "schema": PET, "strict": True}},
        max_output_tokens=100,
        temperature=0,
    )
    jsonschema.validate(json.loads(shaped.output_text), PET)


BAD_CHAT = [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "bogus"}}}},
     "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/nowhere"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"messages": [*QUESTION, {"role": "tool", "tool_call_id": "call_1", "content": "21"}]},
     "messages[1].tool_call_id"),
    ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format"),
]  # fmt: skip
BAD_RESPONSES = [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"store": True}, "store"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]},
     "input[0].content[0]"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "bogus"}}}}, "text.format"),
    ({"max_output_tokens": 10**6}, "max_output_tokens"),
    ({"input": [{"type": ["message"], "role": "user", "content": "hi"}]}, "input[0]"),  # once a 500 (fuzzed)
]  # fmt: skip


def test_bad_schemas_tools_and_tool_messages_are_400s_naming_the_field(smol_server):
    with httpx.Client(base_url=smol_server.url, timeout=60) as http:
        for fields, param in BAD_CHAT:
            body = {"model": "smol", "messages": QUESTION, "max_tokens": 4} | fields
            response = http.post("/v1/chat/completions", json=body)
            assert response.status_code == 400, (fields, response.text)
            assert response.json()["error"]["param"] == param, response.json()
        for fields, param in BAD_RESPONSES:
            response = http.post("/v1/responses", json={"model": "smol", "input": "hi"} | fields)
            assert response.status_code == 400, (fields, response.text)
            assert response.json()["error"]["param"].startswith(param), response.json()
        assert http.get("/v1/responses/resp_1").status_code == 404  # responses are not stored
        assert "/v1/responses" in http.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    "text",
    [
        'Let me look.\n<tool_call>\n{"name": "f", "arguments": {"a": "}", "b": {"c": [1]}}}\n</tool_call>\n'
        '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>',
        "No call here, only <tool text.",
        '<tool_call>\n{"name": "f", "arguments": {"a": 1',  # cut off by max_tokens
    ],
)
def test_tool_calls_streamed_a_character_at_a_time_equal_the_whole_text_parsed(text):
    from leptonkit.serve.tool_calls import ToolCallParser, parse

    content, calls = parse(text)
    parser = ToolCallParser()
    deltas = [d for i in range(len(text)) for d in parser.feed(text[i], final=i == len(text) - 1)]
    assert "".join(d.get("content", "") for d in deltas) == (content or "")
    arguments: dict[int, str] = {}
    for call in (c for d in deltas for c in d.get("tool_calls", [])):
        arguments[call["index"]] = arguments.get(call["index"], "") + call["function"]["arguments"]
    assert [arguments[i] for i in sorted(arguments)] == [c["function"]["arguments"] for c in calls]
    if text.startswith("Let"):
        assert content == "Let me look." and [c["function"]["name"] for c in calls] == ["f", "g"]
        assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"a": "}", "b": {"c": [1]}}, {}]
