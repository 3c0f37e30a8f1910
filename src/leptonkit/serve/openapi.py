"""What the operations layer adds to ``/openapi.json``: bearer auth on every route but the open ones, the error
answers in OpenAI's shape that any route may give, and server-sent events where a request can ask for ``stream``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from leptonkit.serve.authentication import OPEN_PATHS

ERROR_STATUSES = {
    "400": "Invalid request, or input refused by the safety policy (code content_filter).",
    "401": "Missing, invalid or revoked API key.",
    "403": "The key's scope does not allow this route.",
    "404": "Unknown model, adapter or route.",
    "409": "Conflicts with the server's state.",
    "413": "Request body too large.",
    "429": "Rate limit, stream limit or full queue; see Retry-After.",
    "503": "Not ready.",
    "504": "Timed out.",
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "integer", "null"]},
            },
        }
    },
}


def document_errors(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so that the schema it builds (once) carries auth, error answers and SSE."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["ErrorResponse"] = ERROR_SCHEMA
        components.setdefault("securitySchemes", {})["apiKey"] = {"type": "http", "scheme": "bearer"}
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in ERROR_STATUSES.items():
                    responses.setdefault(status, {"description": description, "content": error})
                if path not in OPEN_PATHS:
                    operation["security"] = [{"apiKey": []}]
                if _can_stream(schema, operation):
                    ok = next(iter(r for code, r in responses.items() if code.startswith("2")), None)
                    if ok is not None:
                        ok.setdefault("content", {})["text/event-stream"] = {"schema": {"type": "string"}}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _can_stream(schema: dict[str, Any], operation: dict[str, Any]) -> bool:
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    name = body.get("$ref", "").rsplit("/", 1)[-1]
    return "stream" in schema.get("components", {}).get("schemas", {}).get(name, {}).get("properties", {})
