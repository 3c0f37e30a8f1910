"""Custom services the serving tests load with ``--service tests/serve/services/toolkit.py:CLASS``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import leptonkit as lk


class Toolkit(lk.Service):
    """One endpoint of each kind: batched, streaming, plain (failing on demand) and async."""

    def setup(self) -> None:
        self.batch_sizes: list[int] = []  # one entry per call of score
        self.threads: set[str] = set()

    @lk.endpoint(batch=16, max_wait_ms=50)
    def score(self, query: list[str], passage: list[str]) -> list[float]:
        self.batch_sizes.append(len(query))
        self.threads.add(threading.current_thread().name)
        return [int(q) + len(p) / 10 for q, p in zip(query, passage, strict=True)]

    @lk.endpoint()
    def calls(self) -> list[int]:
        return self.batch_sizes

    @lk.endpoint(stream=True)
    def spell(self, text: str, times: int = 1) -> Iterator[str]:
        for _ in range(times):
            yield from text

    @lk.endpoint(stream=True)
    def drip(self, log: str, times: int = 100) -> Iterator[int]:
        """Slowly: one item per 50 ms, each written to the file ``log`` before it is sent (a client's disconnect
        shows as a log that stops growing)."""
        with Path(log).open("a") as written:
            for i in range(times):
                written.write(f"{i}\n")
                written.flush()
                yield i
                time.sleep(0.05)

    @lk.endpoint()
    def repeat(self, text: str, times: int = 2) -> str:
        return text * times

    @lk.endpoint()
    def divide(self, a: float, b: float = 1.0) -> float:
        return a / b  # b=0: ZeroDivisionError, a bug the server must survive

    @lk.endpoint()
    async def echo(self, text: str) -> str:
        return text


class NoEndpoints(lk.Service):
    def helper(self, text: str) -> str:
        return text


class NoHints(lk.Service):
    @lk.endpoint()
    def score(self, query, passage: str) -> float:
        return 0.0


class Shadow(lk.Service):
    """Claims the built-in /v1/classify."""

    @lk.endpoint(route="/v1/classify")
    def classify(self, text: str) -> str:
        return text
