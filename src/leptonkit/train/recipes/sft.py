"""Recipe ``sft``: instruction tuning of a causal LM on chat, Alpaca or prompt/completion records.

Records become chat messages, the model's chat template formats them, and only the assistant's tokens carry labels.
Examples are padded per batch or, with ``sft.packing``, packed into blocks of ``train.max_length``. The method is any
of :mod:`leptonkit.train.methods` (full, LoRA, ...); the result is registered as a model, or as an adapter pinned to
its base (``merge: true`` registers merged weights). Evaluation: held-out loss on response tokens (the base model's
too, before training) and greedy answers to a few held-out prompts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from leptonkit.errors import InvalidInputError
from leptonkit.registry import ModelVersion, Registry
from leptonkit.registry.artifacts import folder_kind
from leptonkit.train.distributed import is_main
from leptonkit.train.methods import apply_method, trainable_parameters
from leptonkit.train.packing import IGNORE_INDEX, block_features, feature_loader, pack_examples
from leptonkit.train.recipe import Recipe
from leptonkit.train.recipes.finetune import training_metrics
from leptonkit.train.runs import apply_stage_defaults, run_directory, stderr, train_generator
from leptonkit.train.sft_data import Messages, encode_conversations, load_conversations


def run(
    recipe: Recipe,
    *,
    resume: str | None = None,
    registry: Registry | None = None,
    log: Callable[[str], None] = stderr,
) -> ModelVersion | None:
    """Fine-tune, evaluate and register; the metrics hold ``valid``, ``base`` (before training) and ``training``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

    from leptonkit.train.tokenizer import ensure_chat_template, ensure_pad_token

    registry = registry or Registry()
    settings = recipe.sft
    apply_stage_defaults(
        recipe.train, {"lr": 2e-4 if recipe.method == "lora" else 5e-5, "scheduler": "cosine", "max_length": 512}
    )
    run_dir = run_directory(recipe, resume)

    base_path = registry.resolve(recipe.base)
    if folder_kind(base_path) != "model":
        raise InvalidInputError(
            f"base {recipe.base!r} is an adapter", hint="start from a full model, or merge it first"
        )
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    vocabulary = len(tokenizer)
    tokenizer = ensure_pad_token(ensure_chat_template(tokenizer))
    model = AutoModelForCausalLM.from_pretrained(base_path)
    if len(tokenizer) != vocabulary:
        if recipe.method not in ("full", "freeze"):
            raise InvalidInputError(
                f"{recipe.base} has no chat template and its vocabulary lacks the chat markers",
                hint="use method full (it learns the added tokens) or a base trained by leptonkit pretrain",
            )
        model.resize_token_embeddings(len(tokenizer))

    train_conv, valid_conv = _splits(recipe.data, settings.valid_fraction)
    max_length = recipe.train.max_length
    train = _encoded(tokenizer, train_conv, max_length, log, "train")
    valid = _encoded(tokenizer, valid_conv, max_length, log, "held-out") if valid_conv else []
    if settings.packing:
        packed = pack_examples([(f["input_ids"], f["labels"]) for f in train], block_size=max_length)
        log(f"packed into {len(packed)} blocks of {max_length}; {packed.dropped_tokens} tail tokens dropped")
        train = block_features(packed)
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")
    evaluate = _evaluator(tokenizer, valid, valid_conv[: settings.samples], collate, settings.sample_tokens, log)
    base_metrics = evaluate(model) if valid else {}

    torch.manual_seed(recipe.train.seed)  # the same adapter initialisation for the same recipe
    model = apply_method(model, recipe)
    loader = feature_loader(train, collate, batch_size=recipe.train.batch_size, seed=recipe.train.seed)
    result = train_generator(model, loader, recipe, run_dir, evaluate=evaluate if valid else None, resume=resume)
    model.cpu()
    metrics = training_metrics(result, None, *trainable_parameters(model))
    if base_metrics:
        metrics["base"] = base_metrics
    if not is_main():  # under torchrun, rank 0 writes and registers
        return None
    (run_dir / "result.json").write_text(json.dumps(metrics, indent=2))
    adapter = hasattr(model, "peft_config") and not recipe.merge
    if hasattr(model, "peft_config") and recipe.merge:
        model = model.merge_and_unload()
    version = registry.register(
        model,
        name=recipe.name,
        task="generation",
        base=recipe.base if adapter else None,
        tokenizer=tokenizer,
        metrics=metrics,
        lineage={
            "stage": "sft",
            "method": recipe.method,
            "data": str(recipe.data),
            "steps": result.progress.step,
            "run_dir": str(run_dir),
        }
        | ({} if adapter else {"fine_tuned_from": registry.pin(recipe.base)}),
        tags=recipe.tags,
    )
    log(f"registered {version.ref} ({version.kind}, {result.status} after {result.progress.step} steps)")
    return version


def _splits(data: str, valid_fraction: float) -> tuple[list[Messages], list[Messages]]:
    """A prepared folder's train/valid files, or one file whose last ``valid_fraction`` of records is held out."""
    folder = Path(data).expanduser()
    if folder.is_dir():
        if not (folder / "train.jsonl").is_file():
            raise InvalidInputError(f"{folder} has no train.jsonl", hint="give a prepared sft folder or a file")
        valid = folder / "valid.jsonl"
        return load_conversations(folder / "train.jsonl"), load_conversations(valid) if valid.is_file() else []
    conversations = load_conversations(folder)
    held = int(len(conversations) * valid_fraction)
    if valid_fraction and (held == 0 or held == len(conversations)):
        raise InvalidInputError(
            f"{len(conversations)} records are too few to hold out {valid_fraction:.0%}",
            hint="give more records, or set sft.valid_fraction=0",
        )
    return conversations[: len(conversations) - held], conversations[len(conversations) - held :]


def _encoded(tokenizer: Any, conversations: list[Messages], max_length: int, log: Any, what: str) -> list[dict]:
    encoded = encode_conversations(tokenizer, conversations, max_length)
    log(
        f"{what}: {len(conversations)} conversations, {len(encoded.examples)} kept; {encoded.truncated} cut to "
        f"{max_length} tokens, {encoded.without_response} dropped (no reply left after the cut)"
    )
    if not encoded.examples:
        raise InvalidInputError(f"no {what} conversation fits in {max_length} tokens", hint="raise train.max_length")
    return [{"input_ids": ids, "labels": labels} for ids, labels in encoded.examples]


def _evaluator(tokenizer: Any, valid: list[dict], prompts: list[Messages], collate: Any, max_tokens: int, log: Any):
    """Held-out loss over response tokens, and greedy answers to a few held-out prompts."""
    from leptonkit.train.sampling import generate

    def evaluate(model: Any) -> dict[str, float]:
        device = next(model.parameters()).device
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(valid), 16):
                batch = {k: v.to(device) for k, v in collate(valid[start : start + 16]).items()}
                n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
                total += model(**batch).loss.item() * n
                count += n
        loss = total / max(count, 1)
        log(f"  held-out: loss {loss:.4f} over {count} response tokens")
        for messages in prompts:
            question = messages[-2]["content"] if len(messages) > 1 else ""
            answer = generate(model, tokenizer, question, max_tokens=max_tokens, temperature=0, chat=True)["text"]
            log(f"  Q: {question[:120]!r}\n  A: {answer!r}")
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    return evaluate
