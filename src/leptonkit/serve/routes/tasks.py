"""leptonkit's task routes for encoders: ``/v1/classify`` and ``/v1/ner`` (one string or a list per request)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from leptonkit.errors import InvalidInputError
from leptonkit.explain.serving import run_task
from leptonkit.serve.admission import admit_encoder_input
from leptonkit.serve.engine.encoder import EncoderEngine
from leptonkit.serve.parsing import JsonRoute
from leptonkit.serve.protocol import TaskRequest

router = APIRouter(route_class=JsonRoute)


def encoder(request: Request, model: str, task: str, endpoint: str) -> EncoderEngine:
    models = request.app.state.models
    target = models.resolve(model)
    if target.encoder is None or target.encoder.task != task:
        raise InvalidInputError(
            f"model {model} is a {models.tasks[target.name]} model; {endpoint} needs a {task} model", param="model"
        )
    return target.encoder


@router.post("/v1/classify")
async def classify(body: TaskRequest, request: Request) -> dict[str, Any]:
    engine = encoder(request, body.model, "classification", "/v1/classify")
    await admit_encoder_input(request, body.model, body.texts())
    steps = request.app.state.config.explain_steps
    results = await run_task(engine, "classify", body.texts(), explain=body.explain, steps=steps)
    return {"object": "list", "model": body.model, "data": [{"index": i} | r for i, r in enumerate(results)]}


@router.post("/v1/ner")
async def ner(body: TaskRequest, request: Request) -> dict[str, Any]:
    engine = encoder(request, body.model, "ner", "/v1/ner")
    await admit_encoder_input(request, body.model, body.texts())
    steps = request.app.state.config.explain_steps
    results = await run_task(engine, "ner", body.texts(), explain=body.explain, steps=steps)
    return {
        "object": "list",
        "model": body.model,
        "data": [{"index": i, "entities": entities} for i, entities in enumerate(results)],
    }
