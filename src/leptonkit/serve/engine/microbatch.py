"""Dynamic batching shared by the encoder engine and batched custom-service endpoints: concurrent submissions share
one call of a batch function.

Each submission is a list of items and a future. A worker takes what is queued, waits up to ``max_wait_ms`` for more
while the batch holds fewer than ``max_batch`` items, calls ``run`` once on all of them and hands each submission its
slice of the results, in order. A submission whose caller went away (its future cancelled) is dropped before the
call; an exception from ``run`` goes to every submission of that batch, and the worker goes on with the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

BatchFunction = Callable[[list[Any]], Awaitable[list[Any]]]


@dataclass
class _Submission:
    items: list[Any]
    future: asyncio.Future


class MicroBatcher:
    """Gather concurrent :meth:`submit` calls into batches of at most ``max_batch`` items for ``run``."""

    def __init__(
        self,
        run: BatchFunction,
        *,
        max_batch: int,
        max_wait_ms: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch  # called with each batch's size (a metric)
        self._queue: asyncio.Queue[_Submission] | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work(self._queue))

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def submit(self, items: list[Any]) -> list[Any]:
        """Results for ``items`` in order, computed in whatever batch they land in."""
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Submission(items, future))
        return await future

    async def _gather(self, queue: asyncio.Queue[_Submission]) -> list[_Submission]:
        loop = asyncio.get_running_loop()
        batch = [await queue.get()]
        size = len(batch[0].items)
        deadline = loop.time() + self.max_wait
        while size < self.max_batch:
            try:
                submission = (
                    queue.get_nowait()
                    if not queue.empty()
                    else await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                )
            except TimeoutError:
                break
            batch.append(submission)
            size += len(submission.items)
        return [s for s in batch if not s.future.done()]  # the client went away

    async def _work(self, queue: asyncio.Queue[_Submission]) -> None:
        while True:
            batch = await self._gather(queue)
            items = [item for submission in batch for item in submission.items]
            if not items:
                continue
            if self.on_batch is not None:
                self.on_batch(len(items))
            try:
                results = await self.run(items)
            except Exception as err:
                for submission in batch:
                    if not submission.future.done():
                        submission.future.set_exception(err)
                continue
            start = 0
            for submission in batch:
                if not submission.future.done():
                    submission.future.set_result(results[start : start + len(submission.items)])
                start += len(submission.items)
