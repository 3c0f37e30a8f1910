"""A custom service wrapping a registry classifier behind a batched endpoint: what ``benchmarks/service_overhead.py``
compares with the built-in ``/v1/classify`` on the same model (``CLASSIFIER_MODEL``, default ``sentiment``).

    CLASSIFIER_MODEL=sentiment leptonkit serve sentiment --service examples/services/classifier.py:Classifier
"""

from __future__ import annotations

import os
from typing import Any

import leptonkit as lk
from leptonkit.inference import classify


class Classifier(lk.Service):
    def setup(self) -> None:
        self.model = self.load(os.environ.get("CLASSIFIER_MODEL", "sentiment"))

    @lk.endpoint(batch=32, max_wait_ms=5)
    def classify(self, text: list[str]) -> list[dict[str, Any]]:
        """One result per text: label, score and every label's score (what /v1/classify answers per input)."""
        return classify(self.model, text)
