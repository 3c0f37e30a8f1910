"""The PII detector with the registry's NER model: ``pii_detector()`` finds the version aliased ``@pii`` (which
``leptonkit data pii-setup`` builds) and gives :class:`~leptonkit.privacy.pii.PiiDetector` a model that loads it on
first use. ``redact(text)`` uses one such detector per process.

Here, not in ``privacy/``: the detector is a foundation every stage uses, and only this layer knows the registry.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache
from typing import Any

from leptonkit.config import home
from leptonkit.privacy.pii import NO_MODEL_WARNING, PII_ALIAS, PiiDetector, check_mode
from leptonkit.registry.store import Registry

AUTO = "auto"


class RegistryEntityModel:
    """A registry NER model as the detector's :class:`~leptonkit.privacy.pii.EntityModel`, loaded on first call."""

    def __init__(self, ref: str, registry: Registry | None = None) -> None:
        self.ref = ref
        self._registry = registry
        self._loaded: Any = None

    def __call__(self, texts: list[str]) -> list[list[dict]]:
        # torch and transformers come in with the first texts, not with the detector: a server that never logs
        # content and a `data prepare --pii off` never pay for them.
        from leptonkit.inference import extract_entities
        from leptonkit.registry.loading import load_model

        if self._loaded is None:
            self._loaded = load_model(self.ref, task="ner", registry=self._registry)
        return extract_entities(self._loaded, texts)


def find_pii_model(registry: Registry | None = None) -> str | None:
    """The ``NAME@pii`` reference of the version aliased ``@pii``, or ``None`` when there is none."""
    if registry is None:
        if not (home() / "registry.db").is_file():
            return None
        registry = Registry()
    hits = [v for v in registry.list() if PII_ALIAS in v.aliases]
    newest = max(hits, key=lambda v: (v.created_at, v.name), default=None)  # several names aliased: the latest
    return f"{newest.name}@{PII_ALIAS}" if newest else None


def pii_detector(
    model: str | None = AUTO,
    *,
    types: Sequence[str] | None = None,
    key: str | bytes | None = None,
    registry: Registry | None = None,
) -> PiiDetector:
    """A detector whose NER model is ``model``: a registry reference or model folder, ``"auto"`` for the version
    aliased ``@pii`` when there is one (a warning says when there is none), or ``None`` for patterns only."""
    ref = find_pii_model(registry) if model == AUTO else model
    if model == AUTO and ref is None:
        warnings.warn(NO_MODEL_WARNING, stacklevel=2)
    return PiiDetector(RegistryEntityModel(ref, registry) if ref else None, types=types, key=key)


@cache
def default_detector() -> PiiDetector:
    """A process-wide detector (patterns + the ``@pii`` model when present), for one-call redaction."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pii_detector()


def redact(text: str, mode: str = "mask") -> str:
    """Redact one string with the default detector: ``redact("call 555-123-4567")`` -> ``"call [PHONE]"``."""
    return default_detector().redact(text, check_mode(mode))
