"""One Ray Serve replica of a leptonkit app: ``create_app(config)`` built inside the replica, behind ``@serve.ingress``.

The app is built late (``__serve_build_asgi_app__``, called once in each replica after its constructor), so every
replica has its own :class:`~leptonkit.serve.models.ModelSet`: Ray Serve runs the app's lifespan startup once per
replica before the replica is marked running (models load there, one engine per replica), and its shutdown when the
replica stops. Around the app the replica adds:

- ``X-Leptonkit-Replica`` on every response: this replica's id (Ray's ``replica_id.unique_id``);
- ``leptonkit_replica_requests_in_flight``: HTTP requests this replica is answering (``deploy status``);
- its own Prometheus endpoint (``/metrics`` on an ephemeral port of the node's address) whose every sample carries
  ``replica="<id>"``; the address is registered with the app's state actor for ``deploy status``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
from prometheus_client import REGISTRY, CollectorRegistry, Gauge, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from ray import serve
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leptonkit.deploy.ray_state import NAMESPACE, SharedRateLimiter, state_actor_name
from leptonkit.monitor.logging import send_access_lines_to
from leptonkit.serve.app import create_app
from leptonkit.serve.authentication import auth_required
from leptonkit.serve.config import ServeConfig

REPLICA_HEADER = b"x-leptonkit-replica"
IN_FLIGHT = Gauge("leptonkit_replica_requests_in_flight", "HTTP requests this replica is answering.")


class ReplicaHeaderMiddleware:
    """Name the replica on every HTTP response and count the requests in flight."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER, replica.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, stamped)
        finally:
            IN_FLIGHT.dec()


class ReplicaLabelled(Collector):
    """Every sample of the process's default registry with ``replica`` added to its labels."""

    def __init__(self, replica: str) -> None:
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                labels = {**sample.labels, "replica": self.replica}
                labelled.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
            yield labelled


def serve_replica_metrics(replica: str, app_host: str) -> str:
    """Start this replica's labelled Prometheus endpoint (no API key: on loopback when the app is, else on the
    node's address for Prometheus to reach); its URL."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReplicaLabelled(replica))
    on_loopback = not auth_required(None, app_host)  # the server's own test: loopback binds need no keys
    host = app_host if on_loopback else ray.util.get_node_ip_address()
    server, _ = start_http_server(0, addr=host, registry=registry)
    return f"http://{host}:{server.server_port}/metrics"


def verify_models(config: ServeConfig) -> None:
    """Check this node's copy of every pinned registry version against its recorded sha256 (shared storage may be
    stale or partial on one node): a damaged copy fails the replica's start, naming the files."""
    from leptonkit.errors import IntegrityError
    from leptonkit.registry import Registry

    registry = Registry(config.home)
    for ref in [*config.models, *config.adapters.values()]:
        if ref.startswith("builtin:") or Path(ref).expanduser().is_dir():
            continue
        damaged = registry.verify(ref)
        if damaged:
            raise IntegrityError(f"{ref} on node {ray.util.get_node_ip_address()} is damaged", damaged=damaged)


@serve.ingress()
class LeptonkitReplica:
    """A Ray Serve deployment class: ``config`` is the pinned :class:`ServeConfig` as JSON, ``app`` the app name."""

    def __init__(self, config: str, app: str) -> None:
        self.config = ServeConfig.model_validate_json(config)
        self.app_name = app
        self.replica = serve.get_replica_context().replica_id.unique_id

    def __serve_build_asgi_app__(self) -> Any:
        config = self.config
        verify_models(config)
        limiter = None
        if any(v is not None for v in (config.rate_limit_rpm, config.rate_limit_tpm, config.max_streams_per_key)):
            limiter = SharedRateLimiter(
                self.app_name, config.rate_limit_rpm, config.rate_limit_tpm, config.max_streams_per_key
            )
        # Serve's throughput mode replaces a replica's sys.stderr with a stream that logs each write again through
        # Serve's logger and extracts the stack for every line (3% of a replica's time on streamed chat, py-spy).
        # The JSON access lines go to the worker's own stderr, as the direct server's go to its own:
        # worker-*-PID.err in the cluster's session logs.
        send_access_lines_to(sys.__stderr__)
        app = create_app(config, limiter=limiter)
        app.add_middleware(ReplicaHeaderMiddleware, replica=self.replica)
        state = ray.get_actor(state_actor_name(self.app_name), namespace=NAMESPACE)
        ray.get(state.register_replica.remote(self.replica, serve_replica_metrics(self.replica, config.host)))
        return app
