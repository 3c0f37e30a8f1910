"""Sampling from causal LMs with transformers ``generate``, optionally explaining each sampled token.

Used by ``leptonkit generate`` and by pretraining/SFT to print sampled continuations at each evaluation.
"""

from __future__ import annotations

from typing import Any

import torch

from leptonkit.errors import InvalidInputError
from leptonkit.train.tokenizer import IM_END, TokenPieces


def stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS plus the chat turn terminator when the vocabulary has one, so chat replies end at their turn."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    im_end = tokenizer.convert_tokens_to_ids(IM_END) if IM_END in tokenizer.get_vocab() else None
    return ids + ([im_end] if im_end is not None and im_end not in ids else [])


def prompt_ids(tokenizer: Any, prompt: str, *, chat: bool) -> list[int]:
    """The prompt's token ids: raw text, or one user turn in the chat template followed by the assistant's opening."""
    if chat:
        if not tokenizer.chat_template:
            raise InvalidInputError("this model's tokenizer has no chat template", hint="drop --chat")
        return list(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
        )
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    # An empty prompt starts a fresh document: pretraining puts EOS before every document.
    return ids or [tokenizer.eos_token_id]


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompt: str,
    *,
    max_tokens: int = 64,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int | None = None,
    chat: bool = False,
    explain: int = 0,
) -> dict[str, Any]:
    """``{"prompt", "text", "tokens"}``; with ``explain=K`` each token lists its probability and K runners-up.

    Probabilities come from the model's raw distribution (before temperature and top-p), so they show what the
    model believes, not what the sampler was allowed to pick. ``temperature=0`` decodes greedily.
    """
    from transformers import GenerationConfig

    if max_tokens < 1:
        raise InvalidInputError("max tokens must be at least 1", param="max_tokens")
    if temperature < 0 or not 0 < top_p <= 1:
        raise InvalidInputError("temperature must be >= 0 and top-p in (0, 1]", param="temperature")
    ids = prompt_ids(tokenizer, prompt, chat=chat)
    context = getattr(model.config, "max_position_embeddings", None)
    if context:
        if len(ids) >= context:
            raise InvalidInputError(
                f"the prompt has {len(ids)} tokens, the model's context is {context}", hint="shorten the prompt"
            )
        max_tokens = min(max_tokens, context - len(ids))  # the answer ends at the context: finish_reason "length"
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    sampling = temperature > 0
    config = GenerationConfig(
        max_new_tokens=max_tokens,
        do_sample=sampling,
        temperature=temperature if sampling else None,
        top_p=top_p if sampling else None,
        top_k=None,
        eos_token_id=stop_token_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        return_dict_in_generate=True,
        output_logits=bool(explain),
    )
    was_training = model.training
    model.eval()
    # A seeded sample must not move the caller's random state (a training run's evaluation samples mid-run).
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed)
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config)
    model.train(was_training)
    new_ids = out.sequences[0, len(ids) :].tolist()
    result: dict[str, Any] = {"prompt": prompt, "text": whole_characters(tokenizer, new_ids)}
    result["finish_reason"] = "stop" if new_ids and new_ids[-1] in config.eos_token_id else "length"
    if explain:
        pieces = TokenPieces(tokenizer)  # half a character shows as its bytes, not U+FFFD
        result["tokens"] = [
            _explain_step(pieces, logits[0], token, explain) for logits, token in zip(out.logits, new_ids, strict=True)
        ]
    return result


def whole_characters(tokenizer: Any, ids: list[int]) -> str:
    """The text of ``ids`` without special tokens, in whole characters: a character whose last bytes were not
    generated (the output stopped at its length inside it) is left out, as the server's streams leave it out, rather
    than shown as U+FFFD. ``tokenizers``' ``DecodeStream`` holds such bytes back; a tokenizer without a
    ``tokenizers`` backend decodes as it does."""
    from tokenizers.decoders import DecodeStream

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer.decode(ids, skip_special_tokens=True)
    stream = DecodeStream(skip_special_tokens=True)
    return "".join(piece for token in ids if (piece := stream.step(backend, token)))


def _explain_step(pieces: TokenPieces, logits: torch.Tensor, token: int, k: int) -> dict[str, Any]:
    probs = logits.float().softmax(-1)
    top = probs.topk(k + 1)
    runners_up = [
        {"token": pieces(i)[0], "prob": p}
        for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        if i != token
    ][:k]
    return {"token": pieces(token)[0], "id": token, "prob": probs[token].item(), "runners_up": runners_up}
