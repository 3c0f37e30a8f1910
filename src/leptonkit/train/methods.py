"""Fine-tuning methods: ``full``, ``freeze`` (head only), and PEFT's LoRA, IA3 and prefix tuning.

The task head is always trained: PEFT keeps it in ``modules_to_save`` for sequence and token classification.
"""

from __future__ import annotations

from typing import Any

import torch

from leptonkit.errors import InvalidInputError
from leptonkit.registry.loading import expose_past_key_values
from leptonkit.train.recipe import Recipe

PEFT_TASK_TYPES = {"classification": "SEQ_CLS", "ner": "TOKEN_CLS", "sft": "CAUSAL_LM", "pretrain": "CAUSAL_LM"}


def apply_method(model: Any, recipe: Recipe) -> Any:
    """The model to train: itself (full), with a frozen body (freeze), or wrapped by PEFT."""
    method = recipe.method
    if method == "full":
        return model
    head = head_modules(model, recipe.stage)
    if method == "freeze":
        prefix = f"{model.base_model_prefix}."
        for name, param in model.named_parameters():
            param.requires_grad = not name.startswith(prefix) or any(f".{m}." in f".{name}" for m in head or [])
        return model
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, get_peft_model

    task_type = PEFT_TASK_TYPES[recipe.stage]
    if method == "lora":
        config: Any = LoraConfig(
            task_type=task_type,
            r=recipe.lora.r,
            lora_alpha=recipe.lora.alpha,
            lora_dropout=recipe.lora.dropout,
            target_modules=recipe.lora.target_modules,
            modules_to_save=head,
        )
    elif method == "ia3":
        config = IA3Config(
            task_type=task_type,
            target_modules=recipe.ia3.target_modules,
            feedforward_modules=recipe.ia3.feedforward_modules,
            modules_to_save=head,
        )
    else:
        config = PrefixTuningConfig(
            task_type=task_type, num_virtual_tokens=recipe.prefix.num_virtual_tokens, modules_to_save=head
        )
        expose_past_key_values(model)
    try:
        wrapped = get_peft_model(model, config)
    except ValueError as exc:  # e.g. target modules that the architecture does not have
        raise InvalidInputError(f"method {method!r} does not fit {recipe.base}: {exc}", param="method") from None
    if method == "lora":
        lean_lora_dropout(wrapped)
    return wrapped


class MaskDropout(torch.nn.Dropout):
    """Dropout that keeps a one-byte mask for backward, as the fused kernels do.

    On CPU, ``torch.nn.functional.dropout`` multiplies by a float noise tensor and autograd keeps that tensor: four
    bytes per element of every LoRA input, once per adapted module (query, key and value each draw their own), which
    is what made LoRA's training memory larger than full fine-tuning's. ``torch.native_dropout`` keeps a bool mask.
    Same distribution, same scaling, same behaviour in eval mode.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return torch.native_dropout(x, self.p, True)[0]


def lean_lora_dropout(model: Any) -> int:
    """Swap the ``nn.Dropout`` modules of PEFT's LoRA layers for :class:`MaskDropout`; returns how many."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for key, dropout in list(dropouts.items()):
            if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                dropouts[key] = MaskDropout(dropout.p)
                swapped += 1
    return swapped


def head_modules(model: Any, task: str) -> list[str] | None:
    """Modules of the body that belong to the task head and train with it: BERT-style sequence classifiers read
    the pooler (a dense layer over [CLS]), which no PEFT method adapts; peft adds the classifier itself."""
    pooler = getattr(getattr(model, model.base_model_prefix, None), "pooler", None)
    return ["pooler"] if task == "classification" and pooler is not None else None


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
