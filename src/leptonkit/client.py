"""``leptonkit.Client``: a small synchronous client for a leptonkit server (or any OpenAI-compatible one).

Chat and completions return the OpenAI response body, or with ``stream=True`` an iterator over text pieces as the
server produces them; the task routes return plain Python lists. An error answer raises :class:`ApiError` carrying
the server's message, HTTP status and OpenAI error type.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from leptonkit.errors import LeptonkitError


class ApiError(LeptonkitError):
    def __init__(self, message: str, *, status: int, error_type: str, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.http_status = status
        self.error_type = error_type


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 600) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self._endpoints: list[dict[str, Any]] | None = None  # GET /v1/services, read at the first call by name
        self._lock = threading.Lock()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def models(self) -> list[dict[str, Any]]:
        return self._get("/v1/models")["data"]

    def chat(
        self, messages: str | list[dict[str, str]], *, model: str, stream: bool = False, **params: Any
    ) -> dict[str, Any] | Iterator[str]:
        """``messages`` may be one user message as a string; ``params`` are OpenAI's (max_tokens, temperature...)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        body = {"model": model, "messages": messages, **params}
        return self._stream("/v1/chat/completions", body) if stream else self._post("/v1/chat/completions", body)

    def complete(
        self, prompt: str | list[str], *, model: str, stream: bool = False, **params: Any
    ) -> dict[str, Any] | Iterator[str]:
        body = {"model": model, "prompt": prompt, **params}
        return self._stream("/v1/completions", body) if stream else self._post("/v1/completions", body)

    def embed(self, texts: str | list[str], *, model: str) -> list[list[float]]:
        data = self._post("/v1/embeddings", {"model": model, "input": texts})["data"]
        return [item["embedding"] for item in data]

    def classify(self, texts: str | list[str], *, model: str) -> list[dict[str, Any]]:
        return self._post("/v1/classify", {"model": model, "input": texts})["data"]

    def ner(self, texts: str | list[str], *, model: str) -> list[list[dict[str, Any]]]:
        return [item["entities"] for item in self._post("/v1/ner", {"model": model, "input": texts})["data"]]

    def services(self) -> list[dict[str, Any]]:
        """The server's custom-service endpoints (``GET /v1/services``): service, endpoint, path, batch, stream."""
        return self._get("/v1/services")["data"]

    def call(self, endpoint: str, /, **arguments: Any) -> Any:
        """Call a custom-service endpoint with keyword arguments, one item even when the endpoint is batched:
        ``client.call("score", query="...", passage="...")`` -> the endpoint's result, or for a streaming endpoint an
        iterator over its items.

        ``endpoint`` is a method name (``"score"``: looked up in :meth:`services`, which must list exactly one
        endpoint of that name), ``"SERVICE.METHOD"`` (``"reranker.score"``) or a path
        (``"/v1/services/reranker/score"``).
        """
        path = endpoint if endpoint.startswith("/") else self._service_path(endpoint)
        response = self._http.send(self._http.build_request("POST", path, json=arguments), stream=True)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return self._events(response)
        try:
            response.read()
        finally:
            response.close()
        return self._checked(response).json()

    def _service_path(self, name: str) -> str:
        with self._lock:  # threads sharing this client ask the server once
            if self._endpoints is None:
                self._endpoints = self.services()
        service, _, method = name.rpartition(".")
        found = [e["path"] for e in self._endpoints if e["endpoint"] == method and service in ("", e["service"])]
        if len(found) != 1:
            known = ", ".join(f"{e['service']}.{e['endpoint']}" for e in self._endpoints) or "none"
            what = "no endpoint" if not found else "several endpoints"
            raise LeptonkitError(f"{what} named {name!r} on this server", hint=f"its endpoints: {known}")
        return found[0]

    def _events(self, response: httpx.Response) -> Iterator[Any]:
        """The items of a custom-service stream (``data: <JSON>`` events until ``[DONE]``)."""
        try:
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    return
                item = json.loads(line[6:])
                if isinstance(item, dict) and set(item) == {"error"}:
                    error = item["error"]
                    code = error.get("code")  # an HTTP status, or a string code of a refusal (content_filter): 400
                    status = code if isinstance(code, int) else 400
                    raise ApiError(error["message"], status=status, error_type=error["type"], param=error.get("param"))
                yield item
        finally:
            response.close()

    def _get(self, path: str) -> Any:
        return self._checked(self._http.get(path)).json()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._checked(self._http.post(path, json=body)).json()

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[str]:
        """Text pieces of choice 0 (chat ``delta.content`` or completion ``text``) until ``[DONE]``."""
        with self._http.stream("POST", path, json=body | {"stream": True}) as response:
            if response.is_error:
                response.read()
                self._checked(response)
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    return
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    error = chunk["error"]
                    raise ApiError(error["message"], status=int(error.get("code") or 500), error_type=error["type"])
                for choice in chunk.get("choices", []):
                    piece = choice.get("delta", {}).get("content") if "delta" in choice else choice.get("text")
                    if piece and choice.get("index", 0) == 0:
                        yield piece

    @staticmethod
    def _checked(response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"message": response.text or response.reason_phrase, "type": "error"}
        raise ApiError(
            error.get("message", ""),
            status=response.status_code,
            error_type=error.get("type", ""),
            param=error.get("param"),
        )
