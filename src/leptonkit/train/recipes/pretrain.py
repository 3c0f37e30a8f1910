"""Recipe ``pretrain``: raw text in, a registered language model out.

Causal LM (``objective: clm``): train a byte-level BPE tokenizer on the corpus (or reuse one), build a Llama-style
model at the preset size (or continue ``base``), pack documents into blocks with EOS between them, train with the
shared loop, evaluate held-out loss / perplexity / bits per character with sampled continuations, and register.
Masked LM (``objective: mlm``): continue an encoder ``base`` (e.g. ``builtin:minilm``) on domain text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch

from leptonkit.errors import InvalidInputError
from leptonkit.registry import ModelVersion, Registry
from leptonkit.train.corpus import hold_out_tail, load_documents
from leptonkit.train.distributed import is_main
from leptonkit.train.methods import trainable_parameters
from leptonkit.train.packing import block_features, feature_loader, pack_documents
from leptonkit.train.recipe import Recipe
from leptonkit.train.recipes.finetune import training_metrics
from leptonkit.train.runs import apply_stage_defaults, run_directory, stderr, train_generator

TOKENIZER_DIR = "tokenizer"
MLM_BLOCK_SIZE = 128


def run(
    recipe: Recipe,
    *,
    resume: str | None = None,
    registry: Registry | None = None,
    log: Callable[[str], None] = stderr,
) -> ModelVersion | None:
    """Train, evaluate and register; the metrics hold ``valid`` (held-out) and ``training`` (status, throughput)."""
    registry = registry or Registry()
    settings = recipe.pretrain
    mlm = settings.objective == "mlm"
    if mlm and not recipe.base:
        raise InvalidInputError("objective mlm continues an encoder and needs base", hint="e.g. --base builtin:minilm")
    apply_stage_defaults(
        recipe.train,
        {"lr": 2e-4 if recipe.base else 1e-3, "scheduler": "cosine", "warmup_ratio": 0.05, "weight_decay": 0.1},
    )
    run_dir = run_directory(recipe, resume)
    torch.manual_seed(recipe.train.seed)  # the same initial weights (and MLM head) for the same recipe

    documents = load_documents([recipe.data, *settings.extra_data])
    train_docs, valid_docs = hold_out_tail(documents, settings.valid_fraction)
    log(
        f"corpus: {len(documents)} documents, {sum(map(len, documents)):,} characters "
        f"({sum(map(len, valid_docs)):,} held out)"
    )

    tokenizer, model, base_ref = (_encoder if mlm else _causal_lm)(recipe, registry, run_dir, train_docs, resume, log)
    block_size = settings.block_size or (MLM_BLOCK_SIZE if mlm else model.config.max_position_embeddings)
    if block_size > model.config.max_position_embeddings:
        raise InvalidInputError(
            f"block size {block_size} exceeds the model's context of {model.config.max_position_embeddings}",
            param="block_size",
        )
    features, collate, evaluate = (_mlm_data if mlm else _clm_data)(
        tokenizer, model, train_docs, valid_docs, block_size, settings, log
    )
    loader = feature_loader(features, collate, batch_size=recipe.train.batch_size, seed=recipe.train.seed)
    result = train_generator(model, loader, recipe, run_dir, evaluate=evaluate if valid_docs else None, resume=resume)
    model.cpu()
    trainable, total = trainable_parameters(model)
    metrics = training_metrics(result, None, trainable, total)
    metrics["training"]["tokens_per_second"] = round(metrics["training"]["samples_per_second"] * block_size, 1)
    metrics["training"]["block_size"] = block_size
    if not is_main():  # under torchrun, rank 0 writes and registers
        return None
    (run_dir / "result.json").write_text(json.dumps(metrics, indent=2))
    version = registry.register(
        model,
        name=recipe.name,
        task="fill-mask" if mlm else "generation",
        tokenizer=tokenizer,
        metrics=metrics,
        lineage={
            "stage": "pretrain",
            "objective": settings.objective,
            "preset": None if recipe.base else settings.preset,
            "data": [str(recipe.data), *settings.extra_data],
            "continued_from": base_ref,
            "steps": result.progress.step,
            "run_dir": str(run_dir),
        },
        tags=recipe.tags,
    )
    log(f"registered {version.ref} ({result.status} after {result.progress.step} steps)")
    return version


def _causal_lm(recipe: Recipe, registry: Registry, run_dir: Any, documents: list[str], resume: str | None, log: Any):
    """Tokenizer and model: ``base`` continued, or a preset built around a tokenizer trained here (or reused)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from leptonkit.train.presets import llama_config, parameter_count
    from leptonkit.train.tokenizer import ensure_chat_template, ensure_pad_token, train_tokenizer

    settings = recipe.pretrain
    if recipe.base:
        path = registry.resolve(recipe.base)
        tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(path))
        model = AutoModelForCausalLM.from_pretrained(path)
        log(f"continuing {recipe.base}: {sum(p.numel() for p in model.parameters()):,} parameters")
        return tokenizer, model, registry.pin(recipe.base)
    saved = run_dir / TOKENIZER_DIR
    if resume is not None and saved.is_dir():  # the resumed run's own vocabulary, whatever the corpus is now
        tokenizer = AutoTokenizer.from_pretrained(saved)
    elif settings.tokenizer:
        tokenizer = ensure_pad_token(
            ensure_chat_template(AutoTokenizer.from_pretrained(registry.resolve(settings.tokenizer)))
        )
    else:
        tokenizer = train_tokenizer(
            (line for doc in documents for line in doc.splitlines()), vocab_size=settings.vocab_size
        )
        log(f"tokenizer: byte-level BPE, {len(tokenizer):,} tokens")
    tokenizer.save_pretrained(saved)
    config = llama_config(settings.preset, vocab_size=len(tokenizer), tokenizer=tokenizer, **settings.model)
    log(
        f"preset {settings.preset}: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads, context {config.max_position_embeddings}, "
        f"vocabulary {config.vocab_size}: {parameter_count(config):,} parameters"
    )
    return tokenizer, AutoModelForCausalLM.from_config(config), None


def _encoder(recipe: Recipe, registry: Registry, run_dir: Any, documents: list[str], resume: str | None, log: Any):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = registry.resolve(recipe.base)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.mask_token is None:
        raise InvalidInputError(f"{recipe.base} has no mask token", hint="objective mlm needs a BERT-style encoder")
    model = AutoModelForMaskedLM.from_pretrained(path)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"continuing {recipe.base} with masked-language modelling: {parameters:,} parameters")
    return tokenizer, model, registry.pin(recipe.base)


def _packed(tokenizer: Any, documents: list[str], block_size: int, separator: int, log: Any, what: str):
    ids = tokenizer(documents, add_special_tokens=False, verbose=False)["input_ids"]
    packed = pack_documents(ids, block_size=block_size, eos_id=separator)
    log(
        f"{what}: {packed.documents} documents, {packed.tokens:,} tokens packed into {len(packed)} blocks of "
        f"{block_size}; {packed.dropped_tokens} tail tokens dropped"
    )
    return packed


def _clm_data(tokenizer, model, train_docs, valid_docs, block_size, settings, log):
    """Causal LM: packed blocks as inputs and labels, and an evaluation that also prints sampled continuations."""
    from transformers import default_data_collator

    from leptonkit.train.lm_eval import evaluate_lm
    from leptonkit.train.sampling import generate

    packed = _packed(tokenizer, train_docs, block_size, tokenizer.eos_token_id, log, "train")
    # prompts: the first words of held-out lines spread over the held-out text (one long play gives several)
    lines = [line for doc in valid_docs for line in doc.splitlines() if len(line.split()) >= 4]
    count = settings.samples if lines else 0
    prompts = [" ".join(lines[i * len(lines) // count].split()[:4]) for i in range(count)]

    def evaluate(model: Any) -> dict[str, float]:
        metrics = evaluate_lm(model, tokenizer, valid_docs, block_size=block_size)["metrics"]
        for prompt in prompts:
            text = generate(model, tokenizer, prompt, max_tokens=settings.sample_tokens, seed=0)["text"]
            log(f"  sample: {prompt}{text}")
        log("  held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics

    return block_features(packed), default_data_collator, evaluate


def _mlm_data(tokenizer, model, train_docs, valid_docs, block_size, settings, log):
    """Masked LM: blocks framed by [CLS] ... [SEP]; held-out loss on a fixed masking of the held-out blocks."""
    import math

    from transformers import DataCollatorForLanguageModeling

    def framed(docs: list[str], what: str) -> list[dict[str, list[int]]]:
        packed = _packed(tokenizer, docs, block_size - 2, tokenizer.sep_token_id, log, what)
        return [
            {"input_ids": [tokenizer.cls_token_id, *row, tokenizer.sep_token_id]} for row in packed.input_ids.tolist()
        ]

    collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=settings.mlm_probability)
    valid = framed(valid_docs, "held-out") if valid_docs else []

    def evaluate(model: Any) -> dict[str, float]:
        state = torch.get_rng_state()
        torch.manual_seed(0)  # the same masked positions at every evaluation
        total, count = 0.0, 0
        device = next(model.parameters()).device
        for start in range(0, len(valid), 32):
            batch = {k: v.to(device) for k, v in collate(valid[start : start + 32]).items()}
            n = int((batch["labels"] != -100).sum())
            total += model(**batch).loss.item() * n
            count += n
        torch.set_rng_state(state)
        loss = total / max(count, 1)
        log(f"  held-out: masked-token loss {loss:.4f}")
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    return framed(train_docs, "train"), collate, evaluate
