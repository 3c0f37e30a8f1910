"""Per-key rate limits shared by every Ray Serve replica of one app: the buckets live in one named Ray actor.

The actor (:class:`AppState`, one per app, detached, in the ``leptonkit`` namespace) holds the same
:class:`~leptonkit.security.ratelimit.RateLimiter` a single server holds, so the limits behave exactly as in
``leptonkit serve``; it also keeps the app's deploy spec (for ``deploy update``) and each replica's metrics address
(for ``deploy status``). Replicas plug a :class:`SharedRateLimiter` into ``create_app(config, limiter=...)``: the
same methods, each a call to the actor.

The limiter's interface is synchronous (the middleware and the routes call it inline), so a check that needs an
answer (``admit``, ``reserve``, ``open_stream``) waits for the actor's reply with ``ray.get``, about a millisecond
on one node, during which that replica's event loop waits too; charges and stream closes are sent without waiting.
Only apps with ``--rate-limit-*`` or ``--max-streams-per-key`` pay this. A stream open on a replica that dies keeps
its slot until the app is redeployed (the actor cannot tell a dead replica's stream from a slow one).
"""

from __future__ import annotations

from typing import Any

import ray

from leptonkit.security.ratelimit import RateLimiter

NAMESPACE = "leptonkit"


def state_actor_name(app: str) -> str:
    return f"leptonkit-app-{app}"


@ray.remote(num_cpus=0, max_concurrency=1)
class AppState:
    """One app's shared state: the rate limiter, the deploy spec and the replicas' metrics addresses."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        limits = spec["config"]
        self.limiter = RateLimiter(
            limits.get("rate_limit_rpm"), limits.get("rate_limit_tpm"), limits.get("max_streams_per_key")
        )
        self.metrics: dict[str, str] = {}

    def get_spec(self) -> dict[str, Any]:
        return self.spec

    def set_spec(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def register_replica(self, replica: str, metrics_url: str) -> None:
        self.metrics[replica] = metrics_url

    def metrics_urls(self) -> dict[str, str]:
        return dict(self.metrics)

    def admit(self, identity: str) -> tuple[str, int] | None:
        return self.limiter.admit(identity)

    def reserve(self, identity: str, requests: int, tokens: int) -> tuple[str, int] | None:
        return self.limiter.reserve(identity, requests, tokens)

    def charge_tokens(self, identity: str, tokens: int) -> None:
        self.limiter.charge_tokens(identity, tokens)

    def open_stream(self, identity: str) -> bool:
        return self.limiter.open_stream(identity)

    def close_stream(self, identity: str) -> None:
        self.limiter.close_stream(identity)


class SharedRateLimiter(RateLimiter):
    """A :class:`RateLimiter` whose buckets are the app's :class:`AppState` actor's (limits read from the config
    the replica was given; the inherited per-process buckets stay empty)."""

    def __init__(self, app: str, rpm: int | None, tpm: int | None, max_streams: int | None) -> None:
        super().__init__(rpm, tpm, max_streams)
        self.actor = ray.get_actor(state_actor_name(app), namespace=NAMESPACE)

    def admit(self, identity: str) -> tuple[str, int] | None:
        return ray.get(self.actor.admit.remote(identity))

    def reserve(self, identity: str, requests: int, tokens: int) -> tuple[str, int] | None:
        return ray.get(self.actor.reserve.remote(identity, requests, tokens))

    def charge_tokens(self, identity: str, tokens: int) -> None:
        if self.tpm and tokens != 0:
            self.actor.charge_tokens.remote(identity, tokens)

    def open_stream(self, identity: str) -> bool:
        return ray.get(self.actor.open_stream.remote(identity))

    def close_stream(self, identity: str) -> None:
        self.actor.close_stream.remote(identity)
