"""The middleware Ray Serve's HTTP servers put in front of a replica: the app, not Ray, watches for disconnects."""

from __future__ import annotations

import asyncio

import pytest

from leptonkit.deploy.ray_ingress import AppHandlesDisconnects, OneRequestId, ingress_middlewares

HOST = (b"host", b"x")
MARKED = [HOST, (b"x-request-disconnect-disabled", b"?1")]


def _headers_seen(scope: dict) -> list[tuple[bytes, bytes]]:
    seen: list[dict] = []

    async def app(scope, receive, send) -> None:
        seen.append(scope)

    asyncio.run(AppHandlesDisconnects(app)(scope, None, None))
    return seen[0]["headers"]


def test_every_http_request_says_the_app_handles_disconnects_whatever_the_client_sent() -> None:
    plain = [HOST]
    assert _headers_seen({"type": "http", "headers": plain}) == MARKED
    assert plain == [HOST]  # the server's scope is not changed under it
    assert _headers_seen({"type": "http", "headers": [(b"x-request-disconnect-disabled", b"?0"), HOST]}) == MARKED
    assert _headers_seen({"type": "lifespan", "headers": plain}) is plain


def test_the_callback_gives_ray_a_list_of_starlette_middlewares() -> None:
    http_util = pytest.importorskip("ray.serve._private.http_util", reason="ray[serve] is the deploy extra")
    middlewares = http_util.validate_http_proxy_callback_return(ingress_middlewares())  # what Ray checks
    assert [m.cls for m in middlewares] == [AppHandlesDisconnects, OneRequestId]


def _response_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    sent: list[dict] = []

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message) -> None:
        sent.append(message)

    asyncio.run(OneRequestId(app)({"type": "http", "headers": []}, None, send))
    assert sent[1]["body"] == b"{}"
    return sent[0]["headers"]


def test_a_response_keeps_its_first_request_id_only() -> None:
    ray_added = [(b"x-request-id", b"app"), (b"content-length", b"2"), (b"X-Request-ID", b"ray")]
    assert _response_headers(ray_added) == [(b"x-request-id", b"app"), (b"content-length", b"2")]
    assert ray_added[2] == (b"X-Request-ID", b"ray")  # the app's message is not changed under it
    assert _response_headers([(b"x-request-id", b"ray")]) == [(b"x-request-id", b"ray")]  # Ray answered alone
