"""Dynamic batching for encoders (classify, ner, embeddings): concurrent requests share one forward.

A request's texts wait in a queue per operation (``engine.microbatch``, shared with batched custom-service
endpoints): a worker takes what is queued, waits up to ``max_wait_ms`` for more while the batch is below
``max_batch`` inputs, runs the batch on one model thread through ``leptonkit.inference`` and hands each request its
slice of the results. Batches of texts of different lengths run without their padding
where the model allows it (``engine.packed_encoder``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from leptonkit.monitor import metrics
from leptonkit.serve.engine import packed_encoder, torch_threads
from leptonkit.serve.engine.cpu_linear import pack_linears
from leptonkit.serve.engine.microbatch import MicroBatcher

OPERATIONS = ("classify", "ner", "embed")


def _operation(op: str) -> Callable[[Any, list[str]], list[Any]]:
    from leptonkit import inference

    return {"classify": inference.classify, "ner": inference.extract_entities, "embed": inference.embed}[op]


def prepare_encoder(model: Any) -> None:
    """Packed linear weights and unpadded batches (inside :func:`packed_encoder.packing`) for an encoder served
    here: by this engine, or by a custom service that loaded it (``serve.services.Service.load``)."""
    pack_linears(model)
    packed_encoder.enable(model)


class EncoderEngine:
    def __init__(
        self, name: str, loaded: Any, *, max_batch: int = 32, max_wait_ms: float = 5.0, threads: int | None = None
    ) -> None:
        self.name = name
        self.loaded = loaded
        self.task = loaded.task
        prepare_encoder(loaded.model)
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"encoder-{name}", initializer=torch_threads.use, initargs=(threads,)
        )
        self._m_batch = metrics.BATCH_SIZE.labels(model=name)
        self._batchers = {
            op: MicroBatcher(
                partial(self._run_batch, _operation(op)),
                max_batch=max_batch,
                max_wait_ms=max_wait_ms,
                on_batch=self._m_batch.observe,
            )
            for op in OPERATIONS
        }

    async def start(self) -> None:
        for batcher in self._batchers.values():
            await batcher.start()

    async def stop(self) -> None:
        for batcher in self._batchers.values():
            await batcher.stop()
        self._executor.shutdown(wait=True)

    async def run(self, op: str, texts: list[str]) -> list[Any]:
        """Results for ``texts`` in order, computed in whatever batch they land in."""
        return await self._batchers[op].submit(texts)

    def _forward(self, fn: Callable[[Any, list[str]], list[Any]], texts: list[str]) -> list[Any]:
        with packed_encoder.packing():
            return fn(self.loaded, texts)

    async def _run_batch(self, fn: Callable[[Any, list[str]], list[Any]], texts: list[str]) -> list[Any]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._forward, fn, texts)
