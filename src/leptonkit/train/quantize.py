"""``leptonkit models quantize``: post-training weight quantisation of a registered model through ``torchao``, kept
as a new version whose lineage names the source, the method, and what was measured.

Methods (the linear layers' weights; embeddings, norms and activations stay as they are; int4 and w8a8 also quantise
the LM head, :func:`quantize_head`):

- ``int8``: ``Int8WeightOnlyConfig``, int8 with one scale per output channel. Stored as safetensors with torchao's
  metadata, so plain ``transformers`` loads it.
- ``int4``: torchao's CPU int4 (``PrototypeInt4WeightOnlyConfig``, ATen's ``_weight_int4pack_mm_for_cpu``): groups
  of 32 weights with a float scale and zero each, the layout of a GGUF's ``Q4_1``, so SmolLM2's Q4_1 weights
  (dequantised on import) come back exactly. It is the one 4-bit path of torchao 0.18 with a packed kernel on an
  AVX2 CPU: ``Int4WeightOnlyConfig`` needs the GPU library mslk (its ``opaque`` format moved to this prototype),
  and ``IntxWeightOnlyConfig(int4)`` / ``Int8DynamicActivationIntxWeightConfig(int4)`` store int8 and dequantise
  on every call (measured 28x and 73x slower decoding than float32, +0.19 bits per character on SmolLM2 with
  symmetric groups). The model is quantised, and runs, in bfloat16: the kernel is written for bf16 activations
  and takes float32 ones about 10x slower (a 576x1536 layer on this AVX2 CPU: 0.15 against 1.3 ms for one row,
  6 against 150 ms for 150 rows; dense float32 takes 0.11 and 2.7 ms). Stored as a state dict whose int4 weights
  do not depend on the CPU that packed them (:mod:`leptonkit.registry.quantized`).
- ``w8a8``: ``Int8DynamicActivationInt8WeightConfig``, int8 weights with one scale per output channel and int8
  activations with one scale per token, quantised as each layer runs, so the matmul itself is in int8: the fastest
  method for batches on a CPU with VNNI (the serving engine runs it through oneDNN,
  :mod:`leptonkit.serve.engine.int8_dynamic`). Quantised and run in bfloat16; stored as safetensors with torchao's
  metadata, so plain ``transformers`` loads it. The LM head is quantised the same way, untied from the input
  embeddings (which stay bf16): it is the largest matmul of a decode step, and SmolLM2's took 1.5 ms for 32 rows in
  int8 against 2.9 ms in bf16 (compiled, this CPU). It costs 0.005 bits per character on held-out text (dev: the
  first 6,000 characters of Tiny Shakespeare, 1.5135 to 1.5187; bf16 1.5023); the file grows from 164 to 192 MB.
- ``fp8``: float8 activations and weights (``Float8DynamicActivationFloat8WeightConfig``), for GPUs of compute
  capability 8.9+; elsewhere it is refused before anything is loaded.

Each method is first tried on a small linear layer: a method this machine cannot run is one error, and nothing is
registered. With ``data`` the source and the quantised model are evaluated on it (bits per character of held-out
text for a causal LM, accuracy and macro-F1 for a classifier) and both results go into the version.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from leptonkit.errors import InvalidInputError
from leptonkit.registry.artifacts import folder_kind
from leptonkit.registry.loading import LoadedModel, auto_class, load_model
from leptonkit.registry.quantized import QUANTIZATION_FILE, STATE_FORMAT, save_state, write_info
from leptonkit.registry.store import ModelVersion, Registry
from leptonkit.train.evaluate import PRIMARY_METRIC, eval_task, evaluate_records, load_records


def _int8() -> Any:
    from torchao.quantization import Int8WeightOnlyConfig

    return Int8WeightOnlyConfig()


def _int4() -> Any:
    from torchao.prototype.quantization.int4.inference_workflow import PrototypeInt4WeightOnlyConfig

    return PrototypeInt4WeightOnlyConfig(group_size=32)


def _w8a8() -> Any:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig

    return Int8DynamicActivationInt8WeightConfig()


def _fp8() -> Any:
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig

    return Float8DynamicActivationFloat8WeightConfig()


class Method(NamedTuple):
    config: Callable[[], Any]  # the torchao configuration
    storage: str  # "safetensors" or "state_dict" (see leptonkit.registry.quantized)
    dtype: str  # the dtype the model is quantised in and runs in
    head: str  # the LM head: "keep", "int8" (weight-only) or "method" (this method's configuration): quantize_head


METHODS: dict[str, Method] = {
    "int8": Method(_int8, "safetensors", "float32", head="keep"),
    "int4": Method(_int4, STATE_FORMAT, "bfloat16", head="int8"),
    "w8a8": Method(_w8a8, "safetensors", "bfloat16", head="method"),
    "fp8": Method(_fp8, "safetensors", "float32", head="keep"),
}
# the metric each task's quality is compared on, and whether lower is better
QUALITY_METRIC = {"lm": ("bits_per_char", True), "classification": ("accuracy", False)}


def method_config(method: str) -> Any:
    """The torchao configuration of ``method``, after checking on a small layer that this machine runs it."""
    if method not in METHODS:
        raise InvalidInputError(
            f"unknown quantisation method {method!r}", hint=f"use one of: {', '.join(METHODS)}", param="method"
        )
    import torch
    from torchao.quantization import quantize_

    try:
        config = METHODS[method].config()
        layer = torch.nn.Sequential(torch.nn.Linear(64, 64))
        quantize_(layer, config)
        layer(torch.randn(2, 64))
    except Exception as err:  # torchao refuses with ImportError, AssertionError, RuntimeError... per kernel
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidInputError(
            f"quantisation method {method} cannot run on this machine ({reason})",
            hint=f"use one of the methods this CPU runs: {', '.join(m for m in METHODS if m != method and m != 'fp8')}",
            param="method",
        ) from None
    return config


def quantize(
    ref: str,
    *,
    method: str,
    name: str | None = None,
    data: str | os.PathLike[str] | None = None,
    split: str = "test",
    registry: Registry | None = None,
) -> ModelVersion:
    """Quantise the model ``ref`` with ``method``, measure it on ``data`` (optional) and register it as ``name``
    (default: the source's name and the method, ``smol-int4``)."""
    import torch
    from torchao import __version__ as torchao_version
    from transformers import AutoTokenizer, TorchAoConfig

    config = method_config(method)  # first: a method this machine cannot run loads nothing
    registry = registry or Registry()
    source = registry.get(ref)
    path = Path(source.path)
    if folder_kind(path) != "model":
        raise InvalidInputError(f"{source.ref} is an adapter", hint="quantise its base, or merge it first")
    if (path / QUANTIZATION_FILE).is_file() or "quantization_config" in (path / "config.json").read_text():
        raise InvalidInputError(f"{source.ref} is already quantised", hint="quantise the unquantised version")
    task = eval_task(source.task) if data is not None else None
    if task is not None and task not in QUALITY_METRIC:
        raise InvalidInputError(f"measuring a quantised {source.task} model is not supported", param="data")
    records = load_records(data, task, split) if data is not None else None

    _, storage, compute_dtype, _ = METHODS[method]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = auto_class(source.task).from_pretrained(
        path, dtype=getattr(torch, compute_dtype), quantization_config=TorchAoConfig(config)
    )
    model.eval()
    quantize_head(model, method)
    measured: dict[str, Any] = {"quantized_linears": sum(map(_is_quantized, model.modules()))}
    metrics: dict[str, Any] = {}
    if records is not None:
        after = evaluate_records(_loaded(model, tokenizer, source), records, task)
        before = evaluate_records(load_model(source.ref, registry=registry, dtype=torch.float32), records, task)
        metric, _ = QUALITY_METRIC[task]
        metrics = {split: after, "source": {split: before}}
        measured |= {
            "data": str(data),
            "split": split,
            "metric": metric,
            "source": before[metric],
            "quantized": after[metric],
            "change": after[metric] - before[metric],
            "primary": PRIMARY_METRIC[task],
        }
    info = {"library": "torchao", "torchao": torchao_version, "method": method, "config": type(config).__name__}
    info |= {"format": storage, "dtype": compute_dtype}
    with tempfile.TemporaryDirectory(prefix="leptonkit-quantize-") as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        if storage == STATE_FORMAT:
            save_state(model, folder, info)
        else:
            model.save_pretrained(folder)
            write_info(folder, info)
        tokenizer.save_pretrained(folder)
        measured["size_bytes"] = _weights_size(folder)
        measured["source_size_bytes"] = _weights_size(path)
        return registry.register(
            folder,
            name=name or f"{source.name}-{method}",
            task=source.task,
            metrics=metrics,
            lineage={"quantized_from": source.ref, "method": method, "quantization": info, "measured": measured},
        )


def quantize_head(model: Any, method: str) -> None:
    """Quantise a causal LM's head as ``method`` stores it (``Method.head``), untied from the input embeddings, which
    stay as they are: "int8", a weight-only int8 copy (:class:`~leptonkit.registry.int8_linear.Int8Linear`; at decode
    the head is the largest matmul: SmolLM2's in bfloat16 took 95 ms for 32 rows on this CPU eagerly, in int8 33 ms);
    "method", the method's own torchao configuration; "keep" leaves it."""
    import torch

    from leptonkit.registry.int8_linear import Int8Linear

    kind = METHODS[method].head
    head = model.get_output_embeddings()
    if kind == "keep" or not isinstance(head, torch.nn.Linear) or head.bias is not None:
        return
    if kind == "int8":
        model.set_output_embeddings(Int8Linear.quantize(head.weight))
    else:
        from torchao.quantization import quantize_

        head.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)  # its own, untied
        quantize_(head, METHODS[method].config())
    model.config.tie_word_embeddings = False


def _is_quantized(module: Any) -> bool:
    import torch

    from leptonkit.registry.int8_linear import Int8Linear

    if isinstance(module, Int8Linear):
        return True
    weight = getattr(module, "weight", None)
    return isinstance(module, torch.nn.Linear) and weight is not None and type(weight.data) is not torch.Tensor


def _loaded(model: Any, tokenizer: Any, source: ModelVersion) -> LoadedModel:
    from leptonkit.registry.loading import read_labels

    path = Path(source.path)
    return LoadedModel(model, tokenizer, source.task, read_labels(path), path, None)


def _weights_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".pt", ".bin"))
