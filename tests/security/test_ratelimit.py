"""Token buckets: refill over time, Retry-After from the deficit, token charges after the fact, stream slots."""

from __future__ import annotations

from leptonkit.security.ratelimit import RateLimiter, TokenBucket


def test_bucket_refuses_when_empty_and_refills_per_minute():
    bucket = TokenBucket(60)  # one per second
    now = bucket.updated
    assert all(bucket.take(1, now) == 0 for _ in range(60))
    assert bucket.take(1, now) == 1.0
    assert bucket.take(1, now + 1.0) == 0


def test_token_bucket_may_go_negative_and_then_blocks_until_refilled():
    limiter = RateLimiter(requests_per_minute=None, tokens_per_minute=600, max_streams=None)
    assert limiter.admit("k") is None
    limiter.charge_tokens("k", 1200)  # 600 over: 60 s to refill back to zero
    limit, retry_after = limiter.admit("k")
    assert limit == "tokens_per_minute" and 59 <= retry_after <= 60
    assert limiter.admit("other") is None  # buckets are per identity


def test_stream_slots_are_counted_per_identity():
    limiter = RateLimiter(None, None, max_streams=2)
    assert limiter.open_stream("k") and limiter.open_stream("k")
    assert not limiter.open_stream("k")
    assert limiter.open_stream("j")
    limiter.close_stream("k")
    assert limiter.open_stream("k")
