"""Quantised versions (``leptonkit models quantize``): how their weights are stored and loaded.

A quantised version is a Hugging Face folder plus ``quantization.json`` (library, method, configuration, format).
Its weights are torchao tensor subclasses, stored one of two ways:

- ``safetensors``: where torchao's safetensors support knows the tensor type (int8 weight-only), the folder is what
  ``save_pretrained`` writes, with a ``quantization_config`` in ``config.json``: plain ``transformers`` loads it.
- ``torch.save``: torchao's CPU int4 tensor (``Int4OpaqueTensor``) has no safetensors form and its configuration is
  outside the modules ``transformers`` deserialises, so the state dict is pickled to ``quantized_model.pt`` and
  ``config.json`` holds the plain architecture. :func:`load_pickled` builds the model without initialising its
  weights and assigns the stored tensors (loaded with ``weights_only``, torchao's classes allowed); an int8 LM head
  (``lm_head.weight_int8`` and ``lm_head.scales``) becomes an :class:`~leptonkit.registry.int8_linear.Int8Linear`.
  Such a model runs in the dtype it was quantised in (``dtype`` in ``quantization.json``; int4: bfloat16).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QUANTIZATION_FILE = "quantization.json"
PICKLED_WEIGHTS = "quantized_model.pt"
INT8_HEAD = "lm_head"  # where a causal LM of transformers keeps its output layer


def quantization_info(folder: Path) -> dict[str, Any] | None:
    """The folder's ``quantization.json``, or None for a version that is not quantised."""
    path = folder / QUANTIZATION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def save_pickled(model: Any, folder: Path, info: dict[str, Any]) -> None:
    """Write ``model`` (quantised in memory) as config, generation config, pickled state dict and ``info`` (whose
    ``format`` is ``torch.save``)."""
    import torch

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # transformers could not read it back (see the module docstring)
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None and model.can_generate():
        model.generation_config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / PICKLED_WEIGHTS)
    write_info(folder, info | {"weights": PICKLED_WEIGHTS})


def write_info(folder: Path, info: dict[str, Any]) -> None:
    (folder / QUANTIZATION_FILE).write_text(json.dumps(info, indent=2) + "\n")


def load_pickled(folder: Path, auto_class: Any, extra: dict[str, Any]) -> Any:
    """A model of ``auto_class`` with the pickled quantised weights of ``folder`` (the ``torch.save`` format)."""
    import torch
    from torchao.prototype.quantization.int4 import Int4OpaqueTensor
    from transformers import AutoConfig
    from transformers.initialization import no_init_weights

    from leptonkit.errors import InvalidInputError

    stored = quantization_info(folder).get("dtype", "float32")  # versions quantised before the field: float32
    asked = extra.get("dtype")
    if asked is not None and asked != getattr(torch, stored):
        raise InvalidInputError(
            f"this version is quantised in {stored} and runs in {stored} only, not {str(asked).removeprefix('torch.')}",
            hint=f"load it with dtype auto (serve --dtype auto) or {stored}",
            param="dtype",
        )
    config = AutoConfig.from_pretrained(folder, **{k: v for k, v in extra.items() if k != "dtype"})
    with no_init_weights():  # the weights are assigned below: initialising 100M+ parameters would be wasted work
        model = auto_class.from_config(config)
    with torch.serialization.safe_globals([Int4OpaqueTensor, *_torchao_globals()]):
        state = torch.load(folder / PICKLED_WEIGHTS, weights_only=True, mmap=True)
    if f"{INT8_HEAD}.weight_int8" in state:  # an int8 LM head (leptonkit.train.quantize.quantize_head)
        from leptonkit.registry.int8_linear import Int8Linear

        model.set_output_embeddings(Int8Linear(state[f"{INT8_HEAD}.weight_int8"], state[f"{INT8_HEAD}.scales"]))
    model.load_state_dict(state, assign=True)
    model.tie_weights()
    return model


def _torchao_globals() -> list[Any]:
    """Non-tensor classes an ``Int4OpaqueTensor`` pickle refers to."""
    from torchao.quantization.quantize_.workflows import Int4ChooseQParamsAlgorithm

    return [Int4ChooseQParamsAlgorithm]
