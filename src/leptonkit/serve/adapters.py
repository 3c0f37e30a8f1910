"""LoRA adapters on served generators: which are known, which are loaded, and LRU eviction under ``max_adapters``.

An adapter stays *known* from ``--adapter``/``POST /v1/adapters`` until ``DELETE``; at most ``max_adapters`` are
*loaded* into their engines at once. A request for a known adapter that was evicted loads it again, evicting the
least recently used adapter that no running or waiting request needs.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from leptonkit.errors import ConflictError, InvalidInputError, NotFoundError
from leptonkit.monitor import metrics
from leptonkit.registry import Registry


@dataclass
class Adapter:
    name: str
    ref: str
    base: str  # the served model name it runs on
    path: str
    created: int = field(default_factory=lambda: int(time.time()))


class AdapterManager:
    def __init__(self, registry: Registry, engines: dict[str, Any], served_refs: dict[str, str], max_adapters: int):
        self.registry = registry
        self.engines = engines  # served name -> generation engine
        self.served_refs = served_refs  # served name -> pinned registry ref ("name:version"), where known
        self.max_adapters = max_adapters
        self.known: dict[str, Adapter] = {}
        self.loaded: OrderedDict[str, None] = OrderedDict()
        self._lock = asyncio.Lock()

    def describe(self, ref: str, name: str | None = None) -> Adapter:
        """Check a registered adapter against the served bases; nothing is loaded yet."""
        version = self.registry.get(ref)
        if version.kind != "adapter":
            raise InvalidInputError(f"{ref} is a {version.kind}, not an adapter", param="ref")
        # The served name of the adapter's base: the one serving its exact version (two versions of a name can be
        # served side by side), else its bare name.
        pinned = [served for served, ref in self.served_refs.items() if ref == version.base]
        base_name = pinned[0] if pinned else (version.base or "").split(":")[0]
        if base_name not in self.engines:
            raise InvalidInputError(
                f"adapter {ref} needs base model {version.base}, which this server does not serve",
                hint=f"serve {version.base} too; served generators: {', '.join(self.engines) or 'none'}",
                param="ref",
            )
        served = self.served_refs.get(base_name)
        if served and version.base and served != version.base:
            raise InvalidInputError(
                f"adapter {ref} was trained on {version.base} but the server serves {served}", param="ref"
            )
        name = name or version.name
        if name in self.engines:
            raise ConflictError(f"adapter name {name} is already a served model name", param="name")
        return Adapter(name=name, ref=version.ref, base=base_name, path=str(version.path))

    async def add(self, adapter: Adapter) -> Adapter:
        if adapter.name in self.known:
            raise ConflictError(f"adapter {adapter.name} is already loaded", hint="DELETE it first", param="name")
        self.known[adapter.name] = adapter
        try:
            await self.acquire(adapter.name)
        except BaseException:
            self.known.pop(adapter.name, None)
            raise
        return adapter

    async def acquire(self, name: str) -> Adapter:
        """Make sure ``name`` is loaded in its engine (evicting as needed) and mark it most recently used."""
        adapter = self.known.get(name)
        if adapter is None:
            raise NotFoundError(f"adapter {name} is not loaded", hint="POST /v1/adapters to load it", param="model")
        if name in self.loaded:
            self.loaded.move_to_end(name)
            return adapter
        async with self._lock:
            if name not in self.loaded:
                while len(self.loaded) >= self.max_adapters:
                    await self._evict_one()
                await self.engines[adapter.base].add_adapter(name, adapter.path)
                self.loaded[name] = None
                self._gauge(adapter.base)
        return adapter

    async def _evict_one(self) -> None:
        for victim in self.loaded:
            engine = self.engines[self.known[victim].base] if victim in self.known else None
            if engine is None or not engine.uses_adapter(victim):
                await self._unload(victim)
                return
        raise ConflictError(
            f"all {self.max_adapters} loaded adapters are serving requests",
            hint="retry shortly or start the server with a larger --max-adapters",
        )

    async def _unload(self, name: str) -> None:
        adapter = self.known.get(name)
        if adapter is not None and name in self.loaded:
            await self.engines[adapter.base].remove_adapter(name)
        self.loaded.pop(name, None)
        if adapter is not None:
            self._gauge(adapter.base)

    async def remove(self, name: str) -> None:
        if name not in self.known:
            raise NotFoundError(f"adapter {name} is not loaded", param="name")
        async with self._lock:
            await self._unload(name)
            del self.known[name]

    def _gauge(self, base: str) -> None:
        count = sum(1 for n in self.loaded if n in self.known and self.known[n].base == base)
        metrics.ADAPTERS_LOADED.labels(model=base).set(count)
