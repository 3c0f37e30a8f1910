"""``Model``: one registered version, as a Python object.

``leptonkit.load("sentiment@prod")`` (or any training object's ``.train(...)``) gives the :class:`Model` of the version
the reference names; asking again for the same version, under any reference, gives the same object. Nothing loads
weights until a method needs them (``predict``, ``generate``, ``chat``, ``embed``, ``explain``), and then once.
Each method calls what the CLI command of the same name calls (``leptonkit predict | generate | explain | eval``).
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import Any

from leptonkit.errors import InvalidInputError
from leptonkit.registry.store import ModelVersion, Registry

_MODELS: weakref.WeakValueDictionary[tuple[str, str], Model] = weakref.WeakValueDictionary()
_MODELS_LOCK = threading.Lock()


def load(ref: str, *, registry: Registry | None = None) -> Model:
    """The :class:`Model` of the registered version ``ref`` names (``NAME``, ``NAME:VERSION``, ``NAME@ALIAS``).

    >>> import leptonkit as lk, tempfile
    >>> registry = lk.Registry(tempfile.mkdtemp())
    >>> _ = registry.register("builtin:minilm", name="minilm")
    >>> model = lk.load("minilm", registry=registry)
    >>> model.ref, model.task, model is lk.load("minilm:1", registry=registry)
    ('minilm:1', 'embedding', True)
    """
    registry = registry or Registry()
    return Model._of(registry.get(ref), registry)


class Model:
    """A registered version: ``.ref``, ``.metrics``, ``.lineage`` and what can be done with it (see the module)."""

    def __init__(self, version: ModelVersion, registry: Registry) -> None:
        self._version = version
        self._registry = registry
        self._loaded: Any = None
        self._lock = threading.Lock()

    @classmethod
    def _of(cls, version: ModelVersion, registry: Registry) -> Model:
        key = (str(Path(registry.home).resolve()), version.ref)
        with _MODELS_LOCK:
            model = _MODELS.get(key)
            if model is None:
                model = _MODELS[key] = cls(version, registry)
            return model

    def __repr__(self) -> str:
        return f"Model({self.ref!r}, task={self.task!r})"

    @property
    def ref(self) -> str:
        """The pinned reference ``NAME:VERSION``."""
        return self._version.ref

    @property
    def name(self) -> str:
        return self._version.name

    @property
    def task(self) -> str | None:
        return self._version.task

    @property
    def path(self) -> Path:
        return Path(self._version.path)

    @property
    def registry(self) -> Registry:
        return self._registry

    @property
    def metrics(self) -> dict[str, Any]:
        """The version's metrics as stored now (evaluations add to them)."""
        return self._registry.get(self.ref).metrics

    @property
    def lineage(self) -> dict[str, Any]:
        """Where it came from: recipe, data (path, content hash, preparation manifest), base, run folder."""
        return self._version.lineage

    @property
    def loaded(self) -> Any:
        """The model and tokenizer (:class:`~leptonkit.registry.loading.LoadedModel`), loaded at the first use."""
        with self._lock:
            if self._loaded is None:
                from leptonkit.registry.loading import load_model

                self._loaded = load_model(self.ref, registry=self._registry)
            return self._loaded

    def predict(self, texts: str | list[str]) -> Any:
        """Labels (classification) or entities with character offsets (NER): one result for a string, a list for a
        list, as ``leptonkit predict`` prints them."""
        from leptonkit.inference import classify, extract_entities

        run = {"classification": classify, "ner": extract_entities}.get(self.task or "")
        if run is None:
            raise InvalidInputError(
                f"{self.ref} is a {self.task or 'task-less'} model", hint="predict needs a classification or NER model"
            )
        results = run(self.loaded, [texts] if isinstance(texts, str) else list(texts))
        return results[0] if isinstance(texts, str) else results

    def embed(self, texts: str | list[str]) -> Any:
        """Mean-pooled, L2-normalised embeddings: one vector for a string, a list for a list."""
        from leptonkit.inference import embed

        vectors = embed(self.loaded, [texts] if isinstance(texts, str) else list(texts))
        return vectors[0] if isinstance(texts, str) else vectors

    def generate(self, prompt: str, *, max_tokens: int = 64, temperature: float = 0.0, **sampling: Any) -> str:
        """The continuation of ``prompt`` (greedy unless ``temperature`` > 0; ``top_p``, ``seed`` as in
        ``leptonkit generate``)."""
        return self._sample(prompt, max_tokens=max_tokens, temperature=temperature, **sampling)

    def chat(
        self, messages: str | list[dict[str, str]], *, max_tokens: int = 64, temperature: float = 0.0, **sampling: Any
    ) -> str:
        """The assistant's answer to one user message, or to a list of ``{"role", "content"}`` messages, through the
        model's chat template."""
        if isinstance(messages, str):
            return self._sample(messages, chat=True, max_tokens=max_tokens, temperature=temperature, **sampling)
        tokenizer = self.loaded.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidInputError(f"{self.ref} has no chat template", hint="use .generate() with a plain prompt")
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self._sample(prompt, max_tokens=max_tokens, temperature=temperature, **sampling)

    def _sample(self, prompt: str, **options: Any) -> str:
        from leptonkit.train.sampling import generate

        if self.task != "generation":
            raise InvalidInputError(f"{self.ref} is a {self.task} model", hint="generate needs a causal LM")
        return generate(self.loaded.model, self.loaded.tokenizer, prompt, **options)["text"]

    def explain(self, text: str, *, label: str | None = None, method: str = "ig") -> dict[str, Any]:
        """Word attributions for the prediction on ``text`` (``leptonkit explain``)."""
        from leptonkit.explain.explainer import explain

        return explain(self.loaded, text, label=label, method=method)

    def evaluate(self, data: str | os.PathLike[str], *, split: str = "test") -> dict[str, Any]:
        """Metrics on one split of a prepared folder or raw file (``leptonkit eval``); stored on the version too."""
        from leptonkit.train.evaluate import evaluate

        return evaluate(self.ref, data, split=split, registry=self._registry)

    def quantize(self, method: str, **options: Any) -> Model:
        """A quantized copy (``int8``, ``int4``, ``fp8``) registered as a new version, as ``leptonkit models quantize``
        does (``name``, ``data`` to measure it), as a :class:`Model`."""
        from leptonkit.train.quantize import quantize

        version = quantize(self.ref, method=method, registry=self._registry, **options)
        return Model._of(version, self._registry)

    def alias(self, name: str) -> Model:
        """Point ``NAME@name`` at this version (moving the alias if it pointed elsewhere); returns this model."""
        self._registry.alias(self.ref, name)
        return self

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Copy the version's files to ``path``: plain Hugging Face / PEFT files that load without leptonkit."""
        return self._registry.export(self.ref, path)
