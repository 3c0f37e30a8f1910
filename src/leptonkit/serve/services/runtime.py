"""The services one server process runs: a replica of each class, its own thread (the engines' torch thread
setting, the encoder engine's unpadded batches) and a batcher per batched endpoint."""

from __future__ import annotations

import asyncio
import functools
import traceback
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from leptonkit.errors import LeptonkitError
from leptonkit.monitor import metrics
from leptonkit.registry.store import Registry
from leptonkit.serve.engine.microbatch import MicroBatcher
from leptonkit.serve.services.declare import EndpointSpec, Service, ServiceSpec


class HandlerError(Exception):
    """A service handler failed with an exception that is not a LeptonkitError (a bug in the service)."""


class _Replica:
    """One instance of a service class, its thread, and a batcher per batched endpoint."""

    def __init__(self, spec: ServiceSpec, registry: Registry, threads: int | None) -> None:
        self.spec = spec
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"service-{spec.name}", initializer=_use_threads, initargs=(threads,)
        )
        self.registry = registry
        self.instance: Service | None = None
        self.batchers: dict[str, MicroBatcher] = {}

    async def start(self) -> None:
        self.instance = await self.in_thread(self._create)
        for ep in self.spec.endpoints:
            if ep.options.batch:
                batcher = MicroBatcher(
                    functools.partial(self._run_batch, ep),
                    max_batch=ep.options.batch,
                    max_wait_ms=ep.options.max_wait_ms,
                    on_batch=metrics.BATCH_SIZE.labels(model=f"{ep.service}.{ep.method}").observe,
                )
                await batcher.start()
                self.batchers[ep.method] = batcher

    def _create(self) -> Service:
        instance = self.spec.cls()
        instance._registry = self.registry
        instance.setup()
        return instance

    async def stop(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()
        self.executor.shutdown(wait=True)

    async def in_thread(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, functools.partial(_packed, function, *args, **kwargs)
        )

    async def call(self, ep: EndpointSpec, arguments: dict[str, Any]) -> Any:
        function = getattr(self.instance, ep.method)
        try:
            if ep.is_async:
                return await function(**arguments)
            return await self.in_thread(function, **arguments)
        except LeptonkitError:
            raise
        except Exception as err:
            raise HandlerError(traceback.format_exc()) from err

    async def _run_batch(self, ep: EndpointSpec, items: list[dict[str, Any]]) -> list[Any]:
        columns = {name: [item[name] for item in items] for name in ep.parameters}
        results = await self.call(ep, columns)
        if not isinstance(results, list | tuple) or len(results) != len(items):
            got = f"{len(results)} results" if isinstance(results, list | tuple) else type(results).__name__
            raise HandlerError(
                f"{ep.service}.{ep.method} got {len(items)} items and returned {got}, not a list of {len(items)}"
            )
        return list(results)

    async def stream(self, ep: EndpointSpec, arguments: dict[str, Any]) -> AsyncIterator[Any]:
        function = getattr(self.instance, ep.method)
        try:
            if ep.is_async:
                async for item in function(**arguments):
                    yield item
                return
            iterator = iter(await self.in_thread(function, **arguments))
            done = object()
            while (item := await self.in_thread(next, iterator, done)) is not done:
                yield item
        except LeptonkitError:
            raise
        except Exception as err:
            raise HandlerError(traceback.format_exc()) from err


def _use_threads(threads: int | None) -> None:
    from leptonkit.serve.engine import torch_threads  # torch: imported by the server, not by a service's module

    torch_threads.use(threads)


def _packed(function: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run on the service thread with the encoder engine's unpadded batches on (models :meth:`Service.load` gave)."""
    from leptonkit.serve.engine import packed_encoder

    with packed_encoder.packing():
        return function(*args, **kwargs)


class ServiceSet:
    """The services one server process runs (one replica of each), created in the app's lifespan."""

    def __init__(self, specs: list[ServiceSpec], replicas: list[_Replica]) -> None:
        self.specs = specs
        self.replicas = {replica.spec.name: replica for replica in replicas}
        self.endpoints = [ep for spec in specs for ep in spec.endpoints]

    @classmethod
    async def start(cls, specs: list[ServiceSpec], registry: Registry, threads: int | None) -> ServiceSet:
        replicas: list[_Replica] = []
        try:
            for spec in specs:
                replica = _Replica(spec, registry, threads)
                replicas.append(replica)
                await replica.start()
        except BaseException:
            for replica in replicas:
                await replica.stop()
            raise
        return cls(specs, replicas)

    async def close(self) -> None:
        for replica in self.replicas.values():
            await replica.stop()
