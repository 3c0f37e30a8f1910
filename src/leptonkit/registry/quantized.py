"""Quantised versions (``leptonkit models quantize``): how their weights are stored and loaded.

A quantised version is a Hugging Face folder plus ``quantization.json`` (library, method, configuration, format).
Its weights are torchao tensor subclasses, stored one of two ways:

- ``safetensors``: where torchao's safetensors support knows the tensor type (int8 weight-only), the folder is what
  ``save_pretrained`` writes, with a ``quantization_config`` in ``config.json``: plain ``transformers`` loads it.
- ``state_dict``: torchao's CPU int4 tensor (``Int4OpaqueTensor``) has no safetensors form, and its packed rows are
  not portable: ATen's ``_convert_weight_to_int4pack_for_cpu`` lays the nibbles out for the CPU it runs on (blocks of
  32 rows with AVX2, 64 with AVX-512, none without either), so rows packed on one machine give wrong outputs on
  another (checked: packed without vector instructions and run with AVX2, a layer's outputs were off by up to 156).
  The state dict is therefore written to ``quantized_model.safetensors`` with each int4 weight as two plain tensors,
  its 4-bit values in a fixed order (``NAME.weight_int4``: two per byte, the even column in the low nibble) and
  torchao's scales and zeros (``NAME.weight_scale_and_zero``), and ``config.json`` holds the plain architecture.
  :func:`load_state` builds the model without initialising its weights, packs each int4 weight for this CPU and
  assigns the tensors; an int8 LM head (``lm_head.weight_int8`` and ``lm_head.scales``) becomes an
  :class:`~leptonkit.registry.int8_linear.Int8Linear`. Such a model runs in the dtype it was quantised in
  (``dtype`` in ``quantization.json``; int4: bfloat16).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

QUANTIZATION_FILE = "quantization.json"
STATE_FORMAT = "state_dict"
STATE_WEIGHTS = "quantized_model.safetensors"
INT4_VALUES, INT4_SCALES = "weight_int4", "weight_scale_and_zero"  # an int4 weight's two tensors, after its layer
INT8_HEAD = "lm_head"  # where a causal LM of transformers keeps its output layer


def quantization_info(folder: Path) -> dict[str, Any] | None:
    """The folder's ``quantization.json``, or None for a version that is not quantised."""
    path = folder / QUANTIZATION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def save_state(model: Any, folder: Path, info: dict[str, Any]) -> None:
    """Write ``model`` (quantised in memory) as config, generation config, its state dict with portable int4 weights
    (:func:`portable_state`) and ``info`` (whose ``format`` is ``state_dict``)."""
    from safetensors.torch import save_file

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # transformers could not read it back (see the module docstring)
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None and model.can_generate():
        model.generation_config.save_pretrained(folder)
    save_file(portable_state(model.state_dict()), folder / STATE_WEIGHTS)
    write_info(folder, info | {"weights": STATE_WEIGHTS})


def write_info(folder: Path, info: dict[str, Any]) -> None:
    (folder / QUANTIZATION_FILE).write_text(json.dumps(info, indent=2) + "\n")


def portable_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with each ``Int4OpaqueTensor`` ``NAME.weight`` as ``NAME.weight_int4`` (its 4-bit values, two per
    byte) and ``NAME.weight_scale_and_zero``; other tensors as they are, contiguous."""
    from torchao.prototype.quantization.int4 import Int4OpaqueTensor

    out: dict[str, Any] = {}
    for key, tensor in state.items():
        if isinstance(tensor, Int4OpaqueTensor):
            layer = key.removesuffix(".weight")
            values = int4_values(tensor)
            out[f"{layer}.{INT4_VALUES}"] = values[:, 0::2] | (values[:, 1::2] << 4)
            out[f"{layer}.{INT4_SCALES}"] = tensor.scale_and_zero.contiguous()
        else:
            out[key] = tensor.contiguous()
    return out


def int4_values(weight: Any) -> Any:
    """The 4-bit values (0-15, ``uint8`` ``[out, in]``) of an ``Int4OpaqueTensor``, read through ATen's own kernel
    whatever its packing: an identity matrix times the packed rows with every scale 1 and zero 8 (the kernel
    computes ``(q - 8) * scale + zero``) is the values, exact in bfloat16."""
    import torch

    rows, columns = weight.shape
    scale_and_zero = weight.scale_and_zero
    unit = torch.empty_like(scale_and_zero)
    unit[..., 0], unit[..., 1] = 1, 8
    group = columns // scale_and_zero.shape[0]
    identity = torch.eye(columns, dtype=scale_and_zero.dtype)
    values = torch.ops.aten._weight_int4pack_mm_for_cpu(identity, weight.qdata, group, unit)[:, :rows]
    return values.t().round().to(torch.uint8).contiguous()


def int4_weight(packed: Any, scale_and_zero: Any) -> Any:
    """The ``Int4OpaqueTensor`` of a stored int4 weight (:func:`portable_state`), packed for this CPU."""
    import torch
    from torchao.prototype.quantization.int4 import Int4OpaqueTensor

    rows, columns = packed.shape[0], packed.shape[1] * 2
    values = torch.stack((packed & 15, packed >> 4), dim=-1).reshape(rows, columns)
    block = [1, columns // scale_and_zero.shape[0]]
    return Int4OpaqueTensor(pack_int4(values), scale_and_zero, block, torch.Size([rows, columns]))


@functools.cache  # a model asks once per layer, about the same shapes (60 times for SmolLM2: 2.8 s uncached)
def int4_rows_concatenate(rows: tuple[int, ...], columns: int) -> bool:
    """Whether int4 weights of ``rows`` output rows each, packed for this CPU one by one and concatenated, are the
    packing of their rows together (what fusing projections needs). ATen packs in blocks of rows (32 with AVX2, 64
    with AVX-512) and lays a last, partial block out differently, so it depends on the CPU: AVX2 fuses 64 + 16 + 16
    rows wrongly, AVX-512 64 + 32 + 32. Tried on random values of these shapes."""
    import torch

    seeded = torch.Generator().manual_seed(0)  # not the global generator, which seeded sampling may rely on
    values = torch.randint(0, 16, (sum(rows), columns), dtype=torch.uint8, generator=seeded)
    try:
        return torch.equal(pack_int4(values), torch.cat([pack_int4(part) for part in values.split(list(rows))]))
    except RuntimeError:  # ATen refuses row counts that are not a multiple of 16: no int4 weight has them
        return False


def pack_int4(values: Any) -> Any:
    """``values`` (0-15, ``[out, in]``) packed by ATen for this CPU's int4 kernel."""
    import torch

    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(values.to(torch.int32), 1)


def load_state(folder: Path, auto_class: Any, extra: dict[str, Any]) -> Any:
    """A model of ``auto_class`` with the quantised weights of ``folder`` (the ``state_dict`` format)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig
    from transformers.initialization import no_init_weights

    from leptonkit.errors import InvalidInputError

    info = quantization_info(folder)
    if info.get("format") != STATE_FORMAT:  # "torch.save": int4 rows pickled as packed for the quantising CPU
        raise InvalidInputError(
            f"this version's weights are stored as {info.get('format')!r}, which this leptonkit no longer reads "
            "(its int4 rows were packed for one CPU's kernel)",
            hint="quantise its source version again (leptonkit models quantize SOURCE --method int4)",
        )
    stored = info.get("dtype", "float32")
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
    stored_state = load_file(folder / STATE_WEIGHTS)
    state: dict[str, Any] = {}
    for key, tensor in stored_state.items():
        layer, _, name = key.rpartition(".")
        if name == INT4_VALUES:
            state[f"{layer}.weight"] = int4_weight(tensor, stored_state[f"{layer}.{INT4_SCALES}"])
        elif name != INT4_SCALES:
            state[key] = tensor
    if f"{INT8_HEAD}.weight_int8" in state:  # an int8 LM head (leptonkit.train.quantize.quantize_head)
        from leptonkit.registry.int8_linear import Int8Linear

        head = Int8Linear(state[f"{INT8_HEAD}.weight_int8"], state[f"{INT8_HEAD}.scales"])
        model.set_output_embeddings(head)
        state |= {f"{INT8_HEAD}.{name}": buffer for name, buffer in head.named_buffers()}  # as it keeps them
    model.load_state_dict(state, assign=True)
    model.tie_weights()
    return model
