"""Explanations for the server's ``explain: true`` on ``/v1/classify`` and ``/v1/ner``, kept off the batching path.

Each served encoder gets one :class:`ExplanationWorker` on first use, with its own thread and its own copy of the
model: Captum hooks the embedding layer while it attributes, and that hook must never touch the forward passes of
plain requests batched on the engine's thread. The price is one extra copy of the model's weights, paid only by
models that are asked for explanations. The cost per text is bounded by ``--explain-steps`` (integration steps).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from weakref import WeakKeyDictionary

from leptonkit.explain.checks import check_text
from leptonkit.explain.explainer import explain
from leptonkit.registry.loading import LoadedModel

_WORKERS: WeakKeyDictionary[Any, ExplanationWorker] = WeakKeyDictionary()
_WORKERS_LOCK = threading.Lock()


class ExplanationWorker:
    def __init__(self, loaded: LoadedModel, *, steps: int, name: str = "model") -> None:
        self.loaded = dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))
        self.steps = steps
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"explain-{name}")

    def _attributions(self, texts: list[str], results: list[Any]) -> list[Any]:
        if self.loaded.task == "classification":
            return [
                result
                | {"attributions": explain(self.loaded, text, label=result["label"], steps=self.steps)["attributions"]}
                for text, result in zip(texts, results, strict=True)
            ]
        return [
            [
                {key: entity[key] for key in ("type", "text", "start", "end", "score", "attributions")}
                for entity in explain(self.loaded, text, steps=self.steps)["entities"]
            ]
            for text in texts
        ]

    async def add(self, texts: list[str], results: list[Any]) -> list[Any]:
        """``results`` of the plain batch with attributions: each label result, or each NER entity, gains a list."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._attributions, texts, results)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def worker_for(engine: Any, steps: int) -> ExplanationWorker:
    """The explanation worker of a served encoder engine (anything with ``.loaded`` and ``.name``), made once."""
    with _WORKERS_LOCK:
        worker = _WORKERS.get(engine)
        if worker is None:
            worker = _WORKERS[engine] = ExplanationWorker(engine.loaded, steps=steps, name=engine.name)
        return worker


def check_texts(texts: list[str]) -> None:
    """Reject an empty text before any work starts (plain requests accept them; explanations cannot)."""
    for text in texts:
        check_text(text)


async def run_task(engine: Any, op: str, texts: list[str], *, explain: bool, steps: int) -> list[Any]:
    """The plain batched results of ``op``; with ``explain``, attributions added afterwards by the engine's worker."""
    if explain:
        check_texts(texts)
    results = await engine.run(op, texts)
    return await worker_for(engine, steps).add(texts, results) if explain else results
