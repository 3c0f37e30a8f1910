"""Dynamic batching for encoders (classify, ner, embeddings): concurrent requests share one forward.

A request's texts wait in a queue per operation; a worker takes what is queued, waits up to ``max_wait_ms`` for more
while the batch is below ``max_batch`` inputs, runs the batch on one model thread through ``leptonkit.inference``
and hands each request its slice of the results. Batches of texts of different lengths run without their padding
where the model allows it (``engine.packed_encoder``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from leptonkit.monitor import metrics
from leptonkit.serve.engine import packed_encoder, torch_threads
from leptonkit.serve.engine.cpu_linear import pack_linears

OPERATIONS = ("classify", "ner", "embed")


def _operation(op: str) -> Callable[[Any, list[str]], list[Any]]:
    from leptonkit import inference

    return {"classify": inference.classify, "ner": inference.extract_entities, "embed": inference.embed}[op]


@dataclass
class _Item:
    texts: list[str]
    future: asyncio.Future


class EncoderEngine:
    def __init__(
        self, name: str, loaded: Any, *, max_batch: int = 32, max_wait_ms: float = 5.0, threads: int | None = None
    ) -> None:
        self.name = name
        self.loaded = loaded
        self.task = loaded.task
        pack_linears(loaded.model)
        packed_encoder.enable(loaded.model)
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"encoder-{name}", initializer=torch_threads.use, initargs=(threads,)
        )
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._workers: list[asyncio.Task] = []
        self._m_batch = metrics.BATCH_SIZE.labels(model=name)

    async def start(self) -> None:
        for op in OPERATIONS:
            self._queues[op] = asyncio.Queue()
            self._workers.append(asyncio.create_task(self._work(op, self._queues[op])))

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def run(self, op: str, texts: list[str]) -> list[Any]:
        """Results for ``texts`` in order, computed in whatever batch they land in."""
        future = asyncio.get_running_loop().create_future()
        self._queues[op].put_nowait(_Item(texts, future))
        return await future

    def _forward(self, fn: Callable[[Any, list[str]], list[Any]], texts: list[str]) -> list[Any]:
        with packed_encoder.packing():
            return fn(self.loaded, texts)

    async def _work(self, op: str, queue: asyncio.Queue[_Item]) -> None:
        loop = asyncio.get_running_loop()
        fn = _operation(op)
        while True:
            batch = [await queue.get()]
            size = len(batch[0].texts)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    item = (
                        queue.get_nowait()
                        if not queue.empty()
                        else await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                    )
                except TimeoutError:
                    break
                batch.append(item)
                size += len(item.texts)
            batch = [item for item in batch if not item.future.done()]  # the client went away
            texts = [text for item in batch for text in item.texts]
            if not texts:
                continue
            self._m_batch.observe(len(texts))
            try:
                results = await loop.run_in_executor(self._executor, self._forward, fn, texts)
            except Exception as err:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(err)
                continue
            start = 0
            for item in batch:
                if not item.future.done():
                    item.future.set_result(results[start : start + len(item.texts)])
                start += len(item.texts)
