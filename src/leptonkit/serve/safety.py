"""The server's output policy: PII redaction of generated text, a blocklist of patterns, and optionally a
classifier from the registry that flags unsafe input or output.

A flagged input is refused with 400 (``code: content_filter``) before any model runs. Output is filtered on the
engine's delta stream, so streamed and non-streamed answers get the same treatment: text is released with a
look-behind of :data:`HOLD_BACK` characters (PII such as a card number spans several tokens and must be whole
before it is recognised), and a blocked completion stops generating and ends with
``finish_reason: "content_filter"``, as OpenAI's does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

from leptonkit.errors import InvalidInputError
from leptonkit.monitor import metrics
from leptonkit.serve.engine.base import Delta

HOLD_BACK = 64
CHECK_EVERY = 16  # characters between checks; < HOLD_BACK, so nothing unchecked is ever released
CONTENT_FILTER = "content_filter"


class ContentFilterError(InvalidInputError):
    """A request whose input the safety policy refuses (400, ``code: content_filter``)."""

    code = CONTENT_FILTER


class SafetyPolicy:
    """Built once per server from ``ServeConfig``; :attr:`active` is false when nothing is configured."""

    def __init__(
        self,
        *,
        redact_pii: bool = False,
        blocklist: list[str] | None = None,
        classifier: Any = None,
        unsafe_labels: list[str] | None = None,
        threshold: float = 0.5,
        detector: Any = None,
    ) -> None:
        try:
            self.blocklist = [re.compile(pattern, re.IGNORECASE) for pattern in blocklist or ()]
        except re.error as err:
            raise InvalidInputError(f"invalid blocklist pattern: {err}", param="safety_blocklist") from None
        self.redact_pii = redact_pii
        self.detector = detector
        self.classifier = classifier
        self.unsafe_labels = set(unsafe_labels or ("unsafe", "toxic"))
        self.threshold = threshold
        self.active = bool(redact_pii or self.blocklist or classifier is not None)

    @classmethod
    def from_config(cls, config: Any) -> SafetyPolicy:
        classifier = detector = None
        if config.safety_classifier:
            from leptonkit.registry import Registry
            from leptonkit.registry.loading import load_model

            registry = Registry(config.home) if config.home else Registry()
            classifier = load_model(config.safety_classifier, task="classification", registry=registry)
            unknown = set(config.safety_unsafe_labels) - set(classifier.labels)
            if unknown:
                raise InvalidInputError(
                    f"safety classifier {config.safety_classifier} has no label(s) {', '.join(sorted(unknown))}",
                    hint=f"its labels: {', '.join(classifier.labels)}; set --safety-unsafe-label",
                )
        if config.safety_redact_pii:
            from leptonkit.registry import Registry
            from leptonkit.registry.pii import pii_detector

            detector = pii_detector(registry=Registry(config.home) if config.home else None)
        return cls(
            redact_pii=config.safety_redact_pii,
            blocklist=config.safety_blocklist,
            classifier=classifier,
            unsafe_labels=config.safety_unsafe_labels,
            threshold=config.safety_threshold,
            detector=detector,
        )

    def _blocked_by(self, text: str) -> str | None:
        for number, pattern in enumerate(self.blocklist, 1):
            if pattern.search(text):
                return f"blocklist pattern #{number}"
        return None

    def _classify(self, text: str) -> str | None:
        from leptonkit.inference import classify

        result = classify(self.classifier, [text])[0]
        score = max((s for label, s in result["scores"].items() if label in self.unsafe_labels), default=0.0)
        return f"classified unsafe (score {score:.2f})" if score >= self.threshold else None

    async def verdict(self, text: str) -> str | None:
        """Why ``text`` is unsafe, or ``None``; the classifier runs off the event loop."""
        reason = self._blocked_by(text)
        if reason is None and self.classifier is not None and text.strip():
            reason = await asyncio.to_thread(self._classify, text)
        return reason

    async def check_input(self, text: str) -> None:
        """Raise :class:`ContentFilterError` when the request's text is flagged."""
        reason = await self.verdict(text)
        if reason is not None:
            metrics.CONTENT_FILTERED.labels("input_refused").inc()
            raise ContentFilterError(
                f"the request was refused by this server's safety policy: {reason}",
                hint="rephrase the input",
                param="messages",
            )

    def _redact(self, text: str) -> str:
        if not self.redact_pii:
            return text
        redacted = self.detector.redact(text)
        if redacted != text:
            metrics.CONTENT_FILTERED.labels("output_redacted").inc()
        return redacted

    def wrap(self, stream: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
        """The engine's delta stream with the output policy applied (the stream itself when no policy is set)."""
        return self._filtered(stream) if self.active else stream

    async def _filtered(self, stream: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
        raw = ""  # everything generated so far
        sent = 0  # characters of the redacted text already released
        checked = 0  # length of ``raw`` at the last check
        try:
            async for delta in stream:
                raw += delta.text
                final = delta.finish_reason is not None
                if not final and len(raw) - checked < CHECK_EVERY:
                    yield dataclasses.replace(delta, text="")
                    continue
                checked = len(raw)
                # Check the whole text so far: a pattern may span deltas.
                if await self.verdict(raw) is not None:
                    metrics.CONTENT_FILTERED.labels("output_blocked").inc()
                    yield dataclasses.replace(delta, text="", logprob=None, finish_reason=CONTENT_FILTER)
                    return
                clean = self._redact(raw)
                release = len(clean) if final else max(len(clean) - HOLD_BACK, sent)
                yield dataclasses.replace(delta, text=clean[sent:release])
                sent = release
                if final:
                    return
        finally:
            await stream.aclose()
