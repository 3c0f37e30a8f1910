"""What has an explanation and what does not, checked before any attribution work (and, for text, before loading)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from leptonkit.errors import InvalidInputError

if TYPE_CHECKING:
    from leptonkit.registry.loading import LoadedModel

EXPLAINABLE_TASKS = ("classification", "ner")
MAX_STEPS = 1024
METHODS = ("ig", "gxi")
DEFAULT_STEPS = 32


def labels_of(loaded: LoadedModel) -> list[str]:
    """The model's label names in id order (``labels.json`` or the config's ``id2label``)."""
    if loaded.labels:
        return loaded.labels
    id2label = getattr(loaded.model.config, "id2label", None) or {}
    return [id2label[i] for i in range(len(id2label))]


def entity_types(labels: list[str]) -> list[str]:
    """Entity types of an IOB2 label set: ``["B-PER", "I-PER", "O"]`` -> ``["PER"]``."""
    return sorted({label.partition("-")[2] for label in labels if label[:2] in ("B-", "I-")})


def check_text(text: object) -> None:
    """Reject empty or non-string input before any model is loaded."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("the text to explain is empty", hint="pass some words to explain", param="input")


def check_request(loaded: LoadedModel, text: object, *, label: str | None, method: str, steps: int) -> None:
    """Reject what has no explanation with one clear :class:`InvalidInputError`."""
    where = loaded.version.ref if loaded.version else str(loaded.path)
    if loaded.task not in EXPLAINABLE_TASKS:
        raise InvalidInputError(
            f"{where} is a {loaded.task or 'task-less'} model; explanations exist for classification and ner models",
            hint="pass a classification or NER model (see `leptonkit models list`)",
            param="model",
        )
    check_text(text)
    if method not in METHODS:
        raise InvalidInputError(f"unknown method {method!r}", hint=f"use one of: {', '.join(METHODS)}", param="method")
    if not 1 <= steps <= MAX_STEPS:
        raise InvalidInputError(f"steps must be between 1 and {MAX_STEPS}, got {steps}", param="steps")
    if label is not None:
        allowed = labels_of(loaded) if loaded.task == "classification" else entity_types(labels_of(loaded))
        if label not in allowed:
            raise InvalidInputError(
                f"label {label!r} does not exist in {where}", hint=f"use one of: {', '.join(allowed)}", param="label"
            )
