"""Token buckets per API key: requests per minute and tokens per minute, answered with ``Retry-After``.

A request-per-minute bucket is charged one token up front; a generation request then reserves one more per extra
sequence it asks for (:meth:`RateLimiter.reserve`). The token bucket is checked up front (refuse while it is
empty); a generation request reserves its worst case (prompt plus ``max_tokens`` for every sequence) before it is
queued, and every request is charged its real count when it ends, the reservation refunded. The level may go
negative, which makes the caller wait until it has refilled, as OpenAI's limits behave.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``capacity`` per minute."""

    capacity: float
    level: float = field(init=False)
    updated: float = field(init=False, default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.level = self.capacity

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.capacity / 60.0)
        self.updated = now

    def wait(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` is available (0 when it is now)."""
        self._refill(now)
        return 0.0 if self.level >= amount else (amount - self.level) * 60.0 / self.capacity

    def take(self, amount: float, now: float) -> float:
        """Take ``amount`` if available and return 0, else return the seconds until it would be."""
        wait = self.wait(amount, now)
        if wait == 0:
            self.level -= amount
        return wait

    def charge(self, amount: float, now: float) -> None:
        """Take ``amount`` unconditionally (the level may go below zero; a negative amount refunds, up to full)."""
        self._refill(now)
        self.level = min(self.capacity, self.level - amount)


class RateLimiter:
    """Per-identity request and token buckets plus a count of open streams; thread-safe."""

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None, max_streams: int | None):
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self.max_streams = max_streams
        self._requests: dict[str, TokenBucket] = {}
        self._tokens: dict[str, TokenBucket] = {}
        self._streams: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, identity: str) -> tuple[str, int] | None:
        """``None`` when ``identity`` may send a request now, else ``(limit name, Retry-After seconds)``."""
        now = time.monotonic()
        with self._lock:
            if self.tpm:
                wait = self._tokens.setdefault(identity, TokenBucket(self.tpm)).take(0.0, now)
                if wait > 0:
                    return "tokens_per_minute", math.ceil(wait)
            if self.rpm:
                wait = self._requests.setdefault(identity, TokenBucket(self.rpm)).take(1.0, now)
                if wait > 0:
                    return "requests_per_minute", math.ceil(wait)
        return None

    def reserve(self, identity: str, requests: int, tokens: int) -> tuple[str, int] | None:
        """Take ``requests`` request units and ``tokens`` tokens together, or neither: ``None`` when taken, else
        ``(limit name, Retry-After seconds)``. Amounts over a bucket's capacity never fit: check them first."""
        now = time.monotonic()
        with self._lock:
            wanted = [
                (name, buckets.setdefault(identity, TokenBucket(capacity)), amount)
                for name, buckets, capacity, amount in (
                    ("requests_per_minute", self._requests, self.rpm, requests),
                    ("tokens_per_minute", self._tokens, self.tpm, tokens),
                )
                if capacity and amount > 0
            ]
            for name, bucket, amount in wanted:
                wait = bucket.wait(amount, now)
                if wait > 0:
                    return name, math.ceil(wait)
            for _, bucket, amount in wanted:
                bucket.take(amount, now)
        return None

    def charge_tokens(self, identity: str, tokens: int) -> None:
        """Charge ``tokens`` used (a negative count refunds a reservation that was not used)."""
        if self.tpm and tokens != 0:
            with self._lock:
                self._tokens.setdefault(identity, TokenBucket(self.tpm)).charge(float(tokens), time.monotonic())

    def open_stream(self, identity: str) -> bool:
        """Count a new stream for ``identity``; ``False`` (and nothing counted) when it already has the maximum."""
        with self._lock:
            open_now = self._streams.get(identity, 0)
            if self.max_streams is not None and open_now >= self.max_streams:
                return False
            self._streams[identity] = open_now + 1
            return True

    def close_stream(self, identity: str) -> None:
        with self._lock:
            remaining = self._streams.get(identity, 1) - 1
            if remaining > 0:
                self._streams[identity] = remaining
            else:
                self._streams.pop(identity, None)
