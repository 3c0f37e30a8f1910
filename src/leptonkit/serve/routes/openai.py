"""The OpenAI API: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from leptonkit.errors import InvalidInputError
from leptonkit.serve import tool_calls
from leptonkit.serve.admission import admit_encoder_input, admit_input
from leptonkit.serve.engine.base import Structured
from leptonkit.serve.middleware import annotate
from leptonkit.serve.models import Target
from leptonkit.serve.parsing import JsonRoute
from leptonkit.serve.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from leptonkit.serve.routes.generation import Shape, respond

router = APIRouter(route_class=JsonRoute)
EMBEDDING_TASKS = ("embedding", "fill-mask")


def generator(request: Request, model: str, endpoint: str) -> Target:
    models = request.app.state.models
    target = models.resolve(model)
    if target.engine is None:
        raise InvalidInputError(
            f"model {model} is a {models.tasks[target.name]} model; {endpoint} needs a generator",
            hint="use /v1/classify, /v1/ner or /v1/embeddings for encoders",
            param="model",
        )
    return target


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": request.app.state.models.listing()}


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    return await chat(request, body, "/v1/chat/completions")


async def chat(request: Request, body: ChatCompletionRequest, endpoint: str) -> Any:
    """A chat completion (``/v1/responses`` answers through it too): the model's template renders the messages and
    the tools (``serve.tool_calls``); tools or ``response_format`` hold the output to a grammar while decoding."""
    target = generator(request, body.model, endpoint)
    tokenizer = target.engine.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidInputError(
            f"model {body.model} has no chat template", hint="use /v1/completions with a plain prompt", param="model"
        )
    tool_calls.check(body.tools, body.tool_choice, body.messages)
    tools = body.tools if tool_calls.uses_tools(body.tools, body.tool_choice) else None
    messages, template_args = tool_calls.conversation(tokenizer, body.messages, tools)
    await admit_input(request, body.model, [m["content"] for m in messages])
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **template_args)
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    structured, param = _structured_output(body, tools)
    shape = Shape(chat=True, tools=tools is not None)
    return await respond(
        request, body, target, [prompt], shape, logprobs=body.logprobs, top=body.top_logprobs,
        structured=structured, structured_param=param,
    )  # fmt: skip


def _structured_output(body: ChatCompletionRequest, tools: list[Any] | None) -> tuple[Structured | None, str]:
    """The grammar a chat request's output must match, and the request field that asked for it."""
    fmt = body.response_format
    if tools and fmt is not None and fmt.type != "text":
        raise InvalidInputError(
            f"response_format {fmt.type} cannot be combined with tools",
            hint='send tool_choice "none" to answer in this format, or leave response_format out',
            param="response_format",
        )
    if tools:
        return tool_calls.tool_grammar(tools, body.tool_choice or "auto", body.parallel_tool_calls), "tools"
    if fmt is None or fmt.type == "text":
        return None, "response_format"
    if fmt.type == "json_object":
        return Structured("json_object"), "response_format"
    schema = fmt.json_schema
    return Structured("json_schema", json.dumps(schema.schema_), strict=bool(schema.strict)), "response_format"


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    target = generator(request, body.model, "/v1/completions")
    tokenizer = target.engine.tokenizer
    vocab = len(tokenizer)
    prompts = []
    for prompt in body.prompts():
        if isinstance(prompt, str):
            prompts.append(tokenizer(prompt)["input_ids"])
        elif any(not 0 <= token < vocab for token in prompt):
            raise InvalidInputError(f"prompt token ids must lie in [0, {vocab})", param="prompt")
        else:
            prompts.append(prompt)
    await admit_input(request, body.model, [tokenizer.decode(p) if isinstance(p, list) else p for p in body.prompts()])
    top = body.logprobs or 0
    return await respond(request, body, target, prompts, Shape(chat=False), logprobs=body.logprobs is not None, top=top)


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    models = request.app.state.models
    target = models.resolve(body.model)
    if target.encoder is None or target.encoder.task not in EMBEDDING_TASKS:
        raise InvalidInputError(
            f"model {body.model} is a {models.tasks[target.name]} model; /v1/embeddings needs an embedding model",
            param="model",
        )
    size = target.encoder.loaded.model.config.hidden_size
    if body.dimensions is not None and body.dimensions != size:
        raise InvalidInputError(
            f"dimensions {body.dimensions}: model {body.model} gives {size}-dimensional embeddings and was not trained "
            "for shorter (Matryoshka) ones",
            hint=f"leave dimensions out, or send {size}",
            param="dimensions",
        )
    texts = body.texts()
    await admit_encoder_input(request, body.model, texts)
    vectors = await target.encoder.run("embed", texts)
    tokens = sum(len(ids) for ids in target.encoder.loaded.tokenizer(texts, truncation=True)["input_ids"])
    annotate(request, prompt_tokens=tokens)  # log line, --rate-limit-tpm
    if body.user is not None:
        annotate(request, user=body.user)
    if body.encoding_format == "base64":  # the openai package asks for this by default: little-endian float32
        vectors = [base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() for v in vectors]
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
