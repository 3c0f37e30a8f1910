"""Load any registered version (model or adapter) for inference with plain transformers/peft.

Conventions every leptonkit artifact follows, so that this one loader serves training, serving and explanations:
- a full model is a Hugging Face folder; classification and NER models carry ``id2label`` in ``config.json``;
- an adapter is a PEFT folder whose lineage names its pinned base; a classification/NER adapter also holds
  ``labels.json`` (label names in id order) and, usually, the tokenizer files.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leptonkit.errors import InvalidInputError
from leptonkit.registry.artifacts import ADAPTER_CONFIG, folder_kind, infer_task
from leptonkit.registry.quantized import load_state, quantization_info
from leptonkit.registry.store import ModelVersion, Registry

LABELS_FILE = "labels.json"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    task: str | None
    labels: list[str] | None
    path: Path
    version: ModelVersion | None


def auto_class(task: str | None) -> Any:
    import transformers

    return {
        "classification": transformers.AutoModelForSequenceClassification,
        "ner": transformers.AutoModelForTokenClassification,
        "generation": transformers.AutoModelForCausalLM,
        "fill-mask": transformers.AutoModelForMaskedLM,
    }.get(task or "", transformers.AutoModel)


def read_labels(folder: Path) -> list[str] | None:
    """Label names in id order, from ``labels.json`` or the config's ``id2label``; ``None`` for label-free models."""
    if (folder / LABELS_FILE).is_file():
        return list(json.loads((folder / LABELS_FILE).read_text()))
    config_path = folder / "config.json"
    if not config_path.is_file():
        return None
    id2label = json.loads(config_path.read_text()).get("id2label")
    return [id2label[str(i)] for i in range(len(id2label))] if id2label else None


def load_model(
    ref_or_path: str | Path, *, task: str | None = None, registry: Registry | None = None, dtype: Any = None
) -> LoadedModel:
    """Load a registry reference or folder with its tokenizer, in eval mode; adapters are applied to their base."""
    from transformers import AutoTokenizer

    registry = registry or Registry()
    path = registry.resolve(ref_or_path)
    version = None if Path(str(ref_or_path)).expanduser().is_dir() else _version_or_none(registry, str(ref_or_path))
    kind = folder_kind(path)
    task = task or (version.task if version else None) or infer_task(path, kind)
    labels = read_labels(path)
    extra: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
    if labels and task in ("classification", "ner"):
        extra |= {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)},
        }
    if kind == "adapter":
        from peft import PeftModel

        base_ref = (
            version.base if version else json.loads((path / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
        )
        if not base_ref:
            raise InvalidInputError(f"adapter {ref_or_path} does not name its base model")
        base_path = registry.resolve(base_ref)
        base = auto_class(task).from_pretrained(base_path, **extra)
        model = PeftModel.from_pretrained(base, path)
        prepare_loaded(model)
        tokenizer_path = path if (path / "tokenizer_config.json").is_file() else base_path
    else:
        info = quantization_info(path)
        if info is not None and info["format"] != "safetensors":  # torchao's CPU int4 (see registry.quantized)
            model = load_state(path, auto_class(task), extra)
        else:
            model = auto_class(task).from_pretrained(path, **extra)
        tokenizer_path = path
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    return LoadedModel(model=model, tokenizer=tokenizer, task=task, labels=labels, path=path, version=version)


def _version_or_none(registry: Registry, ref: str) -> ModelVersion | None:
    return None if ref.startswith("builtin:") else registry.get(ref)


def expose_past_key_values(model: Any) -> None:
    """Let peft's prefix tuning see ``past_key_values`` in the forward signature of the model's class.

    transformers 5 renamed the argument of encoder models such as BERT to ``cache`` and still accepts the old name
    (deprecated), but peft decides from the signature alone and refuses prefix tuning. Adding the optional keyword to
    the signature changes no behaviour; it is done once per class, for training and for loading alike.
    """
    function = type(model).forward
    signature = inspect.signature(function)
    if "past_key_values" in signature.parameters:
        return
    params = list(signature.parameters.values())
    keyword = inspect.Parameter("past_key_values", inspect.Parameter.KEYWORD_ONLY, default=None)
    at = next((i for i, p in enumerate(params) if p.kind == p.VAR_KEYWORD), len(params))
    function.__signature__ = signature.replace(parameters=[*params[:at], keyword, *params[at:]])


def prepare_loaded(model: Any) -> None:
    """Make a loaded PEFT model runnable: prefix-tuned adapters need :func:`expose_past_key_values` on their base."""
    config = getattr(model, "active_peft_config", None)
    if config is not None and config.is_prompt_learning:
        expose_past_key_values(model.get_base_model())
