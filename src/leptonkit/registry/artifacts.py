"""What a model folder contains: its files with hashes, its parameter count and the task it was built for."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from leptonkit.errors import InvalidInputError

TASKS = ("classification", "ner", "generation", "embedding", "fill-mask")
ADAPTER_CONFIG = "adapter_config.json"
MODEL_CONFIG = "config.json"

_ARCHITECTURE_SUFFIX_TASK = {
    "ForSequenceClassification": "classification",
    "ForTokenClassification": "ner",
    "ForCausalLM": "generation",
    "ForMaskedLM": "fill-mask",
}
_PEFT_TASK_TYPE = {
    "SEQ_CLS": "classification",
    "TOKEN_CLS": "ner",
    "CAUSAL_LM": "generation",
    "FEATURE_EXTRACTION": "embedding",
}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def artifact_files(folder: Path) -> list[Path]:
    """Regular files under ``folder``, sorted, without hidden files (``.git``, ``.gitattributes``)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def file_records(folder: Path) -> list[dict]:
    """``[{"path", "size", "sha256"}]`` for every artifact file, paths relative to ``folder``."""
    return [
        {"path": p.relative_to(folder).as_posix(), "size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in artifact_files(folder)
    ]


def count_parameters(folder: Path) -> int | None:
    """Sum of tensor sizes over the folder's safetensors files, read from their headers (no weights loaded; the
    numpy view, so that registering a model does not import torch: 2.6 s of a 3.9 s ``models import``)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                size = 1
                for dim in handle.get_slice(key).get_shape():
                    size *= dim
                total += size
    return total


def folder_kind(folder: Path) -> str:
    """``adapter`` for a PEFT adapter folder, ``model`` for a Hugging Face model folder; else a clear error."""
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder", hint="give a Hugging Face format folder or builtin:minilm")
    if (folder / ADAPTER_CONFIG).is_file():
        return "adapter"
    if (folder / MODEL_CONFIG).is_file():
        return "model"
    raise InvalidInputError(
        f"{folder} has neither config.json nor adapter_config.json",
        hint="give a folder written by save_pretrained (a Hugging Face model or a PEFT adapter)",
    )


def infer_task(folder: Path, kind: str) -> str | None:
    """The task a folder was built for, read from its config; ``None`` when the config does not say."""
    if kind == "adapter":
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        return _PEFT_TASK_TYPE.get(str(config.get("task_type")))
    config = json.loads((folder / MODEL_CONFIG).read_text())
    for architecture in config.get("architectures") or []:
        for suffix, task in _ARCHITECTURE_SUFFIX_TASK.items():
            if architecture.endswith(suffix):
                return task
        if architecture.endswith("Model"):
            return "embedding"
    return None


def validate_task(task: str | None) -> str | None:
    if task is not None and task not in TASKS:
        raise InvalidInputError(f"unknown task {task!r}", hint=f"use one of: {', '.join(TASKS)}", param="task")
    return task
