"""What the console's JavaScript calls: the playground (chat streamed token by token, classify and NER with word
attributions) and the live operations numbers.

The browser holds no API key: these routes call the server's OpenAI-compatible API as the session's key, and pass
its answers through (a stream chunk by chunk, as it comes). A server error (a model that is not served or failed to
load, a refused request) comes back as the server's own message and status, shown on the page.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from leptonkit.console.sessions import Session
from leptonkit.console.web import Refused, check_csrf_header, console_of, session_of

router = APIRouter(prefix="/api")
CHAT_FIELDS = {"model", "messages", "temperature", "top_p", "max_tokens", "seed"}
TASK_FIELDS = {"model", "text", "task"}
TASK_ROUTES = {"classify": "/v1/classify", "ner": "/v1/ner"}


def _server(request: Request) -> str:
    url = console_of(request).server_url(request)
    if url is None:
        raise Refused(503, "no server to talk to: start the console with --server URL, or serve with --console")
    return url


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "server_error"}}, status)


def _upstream_error(response: httpx.Response, body: bytes) -> JSONResponse:
    """The server's refusal, its message kept (OpenAI's error shape), its status kept."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace")[:500] or response.reason_phrase
    return _error(response.status_code, f"the server answered {response.status_code}: {message}")


async def _json_body(request: Request, session: Session, allowed: set[str]) -> dict[str, Any]:
    check_csrf_header(request, session)
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise Refused(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Refused(400, f"unknown field {unknown[0]!r}: the playground sends {', '.join(sorted(allowed))}")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Refused(400, "pick a model")
    return body


def _headers(session: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {session.key}"}


@router.get("/models")
async def models(request: Request):
    """The models the server serves (``/v1/models``: id, task, parent of an adapter)."""
    return await _relay(request, session_of(request), "GET", "/v1/models")


async def _relay(request: Request, session: Session, method: str, path: str, payload: Any = None) -> JSONResponse:
    """One JSON request to the server as the session's key; its answer, or a 502 when it cannot be reached."""
    url = _server(request)
    try:
        response = await console_of(request).client.request(method, url + path, json=payload, headers=_headers(session))
    except httpx.HTTPError as err:
        return _error(502, f"cannot reach the server at {url}: {err}")
    if response.status_code != 200:
        return _upstream_error(response, response.content)
    return JSONResponse(response.json())


@router.post("/chat")
async def chat(request: Request):
    """``/v1/chat/completions`` with ``stream: true``, passed through as server-sent events."""
    session = session_of(request)
    body = await _json_body(request, session, CHAT_FIELDS)
    url = _server(request)
    client = console_of(request).client
    upstream = client.build_request(
        "POST", f"{url}/v1/chat/completions", json=body | {"stream": True}, headers=_headers(session)
    )
    try:
        response = await client.send(upstream, stream=True)
    except httpx.HTTPError as err:
        return _error(502, f"cannot reach the server at {url}: {err}")
    if response.status_code != 200:
        content = await response.aread()
        await response.aclose()
        return _upstream_error(response, content)
    return StreamingResponse(
        response.aiter_raw(), media_type="text/event-stream", background=BackgroundTask(response.aclose)
    )


@router.post("/task")
async def task(request: Request):
    """``/v1/classify`` or ``/v1/ner`` with ``explain: true``: the result with its word attributions."""
    session = session_of(request)
    body = await _json_body(request, session, TASK_FIELDS)
    route = TASK_ROUTES.get(body.get("task", "classify"))
    if route is None:
        raise Refused(400, f"task must be one of {', '.join(TASK_ROUTES)}")
    if not isinstance(body.get("text"), str) or not body["text"].strip():
        raise Refused(400, "type a text to explain")
    payload = {"model": body["model"], "input": body["text"], "explain": True}
    return await _relay(request, session, "POST", route, payload)


@router.get("/operations")
async def operations(request: Request):
    """Rates since the last poll, gauges, per-model queues, and the alert rules judged on them."""
    session = session_of(request)
    console = console_of(request)
    url = _server(request)
    problem, text = None, None
    try:
        response = await console.client.get(f"{url}/metrics", headers=_headers(session))
        if response.status_code == 200:
            text = response.text
        else:
            problem = f"{url}/metrics answered {response.status_code}"
    except httpx.HTTPError as err:
        problem = f"cannot reach {url}/metrics: {err}"
    summary, scrape = console.watcher.observe(text)
    alerts = [rule.judge(summary, scrape) for rule in console.rules]
    return JSONResponse(
        {
            "server": url,
            "problem": problem,
            "summary": summary,
            "alerts": alerts,
            "rules_problem": console.rules_problem,
        }
    )
