"""Liveness, readiness and run-time adapter management."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from leptonkit.serve.authentication import ADMIN_TAG
from leptonkit.serve.parsing import JsonRoute
from leptonkit.serve.protocol import AdapterRequest

router = APIRouter(route_class=JsonRoute)


@router.head("/health")
@router.get("/health")
async def health() -> dict[str, str]:
    """Alive: the process answers HTTP (models may still be loading). ``HEAD`` too, as some load balancers probe."""
    return {"status": "ok"}


@router.head("/ready")
@router.get("/ready")
async def ready(request: Request) -> Any:
    """Ready: every model is loaded. 503 before, and while a generator's waiting queue is full ("saturated"), so a
    load balancer sends new work elsewhere instead of into 429s."""
    models = request.app.state.models
    if models is None:
        return JSONResponse({"status": "not ready"}, status_code=503)
    stats = {name: engine.stats() for name, engine in models.generators.items()}
    limit = request.app.state.config.max_queue
    saturated = [name for name, s in stats.items() if s["waiting"] >= limit]
    body = {"status": "saturated" if saturated else "ready", "models": list(models.refs), "generators": stats}
    return JSONResponse(body, status_code=503 if saturated else 200)


@router.post("/v1/adapters", status_code=201, tags=[ADMIN_TAG])
async def load_adapter(body: AdapterRequest, request: Request) -> dict[str, Any]:
    adapters = request.app.state.models.adapters
    adapter = await adapters.add(adapters.describe(body.ref, body.name))
    return {"id": adapter.name, "object": "model", "root": adapter.ref, "parent": adapter.base}


@router.delete("/v1/adapters/{name}", tags=[ADMIN_TAG])
async def unload_adapter(name: str, request: Request) -> dict[str, Any]:
    await request.app.state.models.adapters.remove(name)
    return {"id": name, "object": "model", "deleted": True}
