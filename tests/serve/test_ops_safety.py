"""The output policy on the engine's delta stream: PII redaction across token boundaries, blocklist, hold-back.

The policy on a real server (content_filter, flagged input, a registry classifier) is tested in test_ops_server.py.
"""

from __future__ import annotations

import asyncio

from leptonkit.serve.engine.base import Delta
from leptonkit.serve.safety import HOLD_BACK, SafetyPolicy

SECRET = "Write to jane.doe@example.com or pay with 4111 1111 1111 1111 before noon, thanks a lot for waiting."


async def _pieces(text: str, size: int = 3):
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    for n, chunk in enumerate(chunks, 1):
        yield Delta(chunk, completion_tokens=n, finish_reason="stop" if n == len(chunks) else None)


def _run(policy: SafetyPolicy, text: str, size: int = 3) -> list[Delta]:
    async def go():
        return [d async for d in policy.wrap(_pieces(text, size))]

    return asyncio.run(go())


def test_pii_is_redacted_even_when_split_across_deltas():
    from leptonkit.privacy.pii import PiiDetector

    policy = SafetyPolicy(redact_pii=True, detector=PiiDetector(model=None))
    deltas = _run(policy, SECRET)
    released = "".join(d.text for d in deltas)
    assert released == "Write to [EMAIL] or pay with [CREDIT_CARD] before noon, thanks a lot for waiting."
    assert deltas[-1].finish_reason == "stop" and deltas[-1].completion_tokens == len(deltas)
    so_far = ""
    for delta in deltas:  # no prefix of the stream ever shows a piece of the raw values
        so_far += delta.text
        assert "jane" not in so_far and "4111" not in so_far


def test_chinese_pii_is_redacted_in_the_output_stream():
    from leptonkit.privacy.pii import PiiDetector

    policy = SafetyPolicy(redact_pii=True, detector=PiiDetector(model=None))
    text = "请联系王小明先生，手机 138-1234-5678，身份证号 11010519491231002X，谢谢。"
    released = "".join(d.text for d in _run(policy, text, size=2))
    assert released == "请联系[PERSON]先生，手机 [PHONE]，身份证号 [CN_ID_CARD]，谢谢。"


def test_blocklist_stops_the_stream_with_content_filter():
    policy = SafetyPolicy(blocklist=[r"pay\s+with"])
    deltas = _run(policy, SECRET)
    assert deltas[-1].finish_reason == "content_filter"
    assert "pay" not in "".join(d.text for d in deltas)
    assert len(deltas) < len(SECRET) // 3  # generation was cut short
    inactive = SafetyPolicy()
    stream = _pieces("x")
    assert inactive.wrap(stream) is stream  # no policy: no per-token cost


def test_release_lags_by_at_most_the_hold_back_window():
    deltas = _run(SafetyPolicy(blocklist=["never-matches"]), "a" * 200)
    released = 0
    for n, delta in enumerate(deltas[:-1], 1):
        released += len(delta.text)
        assert released >= n * 3 - HOLD_BACK - 16
    assert released + len(deltas[-1].text) == 200
