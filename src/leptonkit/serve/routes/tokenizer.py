"""vLLM's tokenizer endpoints: ``POST /tokenize`` (a prompt, or chat messages through the model's chat template, as
``/v1/chat/completions`` renders them) and ``POST /detokenize``, for any served model, generators and encoders alike.

Shapes are vLLM's: ``{"count", "max_model_len", "tokens", "token_strs"}`` and ``{"prompt"}``. Like every route
they need an API key where auth is on (``serve/authentication.py`` denies by default).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from leptonkit.errors import InvalidInputError
from leptonkit.serve import tool_calls
from leptonkit.serve.parsing import JsonRoute
from leptonkit.serve.protocol import DetokenizeRequest, TokenizeRequest

router = APIRouter(route_class=JsonRoute, tags=["tokenizer"])


def _tokenizer(request: Request, model: str) -> tuple[Any, int]:
    """The tokenizer of ``model`` and the longest input it takes."""
    target = request.app.state.models.resolve(model)
    if target.engine is not None:
        return target.engine.tokenizer, target.engine.context_length
    loaded = target.encoder.loaded
    context = getattr(loaded.model.config, "max_position_embeddings", None) or loaded.tokenizer.model_max_length
    return loaded.tokenizer, int(context)


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
    if (body.prompt is None) == (body.messages is None):
        raise InvalidInputError("send either prompt or messages", param="prompt" if body.prompt else "messages")
    tokenizer, context = _tokenizer(request, body.model)
    if body.messages is None:
        special = True if body.add_special_tokens is None else body.add_special_tokens
        ids = tokenizer(body.prompt, add_special_tokens=special)["input_ids"]
    else:
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidInputError(
                f"model {body.model} has no chat template", hint="tokenize a plain prompt instead", param="messages"
            )
        continued = body.continue_final_message
        if continued and body.add_generation_prompt and "add_generation_prompt" in body.model_fields_set:
            raise InvalidInputError(
                "add_generation_prompt and continue_final_message cannot both be true", param="add_generation_prompt"
            )
        messages, template_args = tool_calls.conversation(tokenizer, body.messages, None)
        text = tokenizer.apply_chat_template(
            messages,
            add_generation_prompt=body.add_generation_prompt and not continued,
            continue_final_message=continued,
            tokenize=False,
            **template_args,
        )
        ids = tokenizer(text, add_special_tokens=bool(body.add_special_tokens))["input_ids"]
    strs = tokenizer.convert_ids_to_tokens(ids) if body.return_token_strs else None
    return {"count": len(ids), "max_model_len": context, "tokens": ids, "token_strs": strs}


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
    tokenizer, _ = _tokenizer(request, body.model)
    vocab = len(tokenizer)
    if any(not 0 <= token < vocab for token in body.tokens):
        raise InvalidInputError(f"token ids must lie in [0, {vocab})", param="tokens")
    return {"prompt": tokenizer.decode(body.tokens)}
