"""A small FastAPI app carrying the real operations layer, for testing it apart from the model routes.

Run as ``uvicorn --factory tests.security.apps:ops_app``; settings come as JSON in ``LEPTONKIT_TEST_OPS``.
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Request
from pydantic import BaseModel

from leptonkit.serve.config import ServeConfig
from leptonkit.serve.middleware import annotate
from leptonkit.serve.operations import install_operations


class EchoRequest(BaseModel):
    model: str = "echo"
    prompt: str
    max_tokens: int = 16


def ops_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/echo")
    async def echo(body: EchoRequest, request: Request):
        words = body.prompt.split()[: body.max_tokens]
        annotate(request, model=body.model, prompt_tokens=len(body.prompt.split()), completion_tokens=len(words))
        annotate(request, prompt=body.prompt, output=" ".join(words))  # what a real route's admission notes
        return {"text": " ".join(words)}

    @app.post("/v1/adapters", tags=["admin"])
    def load_adapter() -> dict:
        return {"loaded": True}

    install_operations(app, ServeConfig(models=["echo"], **json.loads(os.environ.get("LEPTONKIT_TEST_OPS", "{}"))))
    return app
