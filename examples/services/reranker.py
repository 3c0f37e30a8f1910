"""A custom service: a re-ranker on the built-in MiniLM encoder, with a batched and a streaming endpoint.

    leptonkit serve --service examples/services/reranker.py:Reranker

    POST /v1/services/reranker/score   {"query": "...", "passage": "..."}  -> a float (cosine similarity)
    POST /v1/services/reranker/tokens  {"text": "..."}                     -> server-sent events, one word piece each

or from Python: ``leptonkit.Client(url).call("score", query="...", passage="...")``.
"""

from __future__ import annotations

from collections.abc import Iterator

import leptonkit as lk
from leptonkit.inference import embed


class Reranker(lk.Service):
    def setup(self) -> None:
        self.encoder = self.load("builtin:minilm")  # once per replica: a registry model, loaded for inference

    @lk.endpoint(batch=32, max_wait_ms=5)
    def score(self, query: list[str], passage: list[str]) -> list[float]:
        """Concurrent requests arrive together: one encoder forward for every query and passage of the batch."""
        vectors = embed(self.encoder, query + passage)
        queries, passages = vectors[: len(query)], vectors[len(query) :]
        return [sum(a * b for a, b in zip(q, p, strict=True)) for q, p in zip(queries, passages, strict=True)]

    @lk.endpoint(stream=True)
    def tokens(self, text: str) -> Iterator[str]:
        yield from self.encoder.tokenizer.tokenize(text)
