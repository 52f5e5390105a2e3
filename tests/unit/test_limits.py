"""Per-caller limits: the sliding message window, thread and token counts, caller keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.limits import (
    MessageRateLimiter,
    RateLimitedError,
    apply_usage,
    caller_digest,
    caller_key,
    check_threads,
    check_tokens,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_the_message_window_admits_the_limit_per_minute_and_says_when_to_retry() -> None:
    clock = FakeClock()
    limiter = MessageRateLimiter(clock=clock)
    for _ in range(3):
        limiter.admit("a", 3)
        clock.advance(10)
    with pytest.raises(RateLimitedError) as refused:
        limiter.admit("a", 3)
    assert refused.value.retry_after == 30 and refused.value.http_status == 429
    limiter.admit("b", 3)  # callers are counted apart
    clock.advance(30)
    limiter.admit("a", 3)  # the oldest message left the window
    limiter.admit("a", 0)  # 0 turns the limit off


def test_a_refused_message_is_not_counted() -> None:
    clock = FakeClock()
    limiter = MessageRateLimiter(clock=clock)
    limiter.admit("a", 1)
    for _ in range(5):
        with pytest.raises(RateLimitedError):
            limiter.admit("a", 1)
    clock.advance(60.5)
    limiter.admit("a", 1)


def test_usage_counts_threads_and_the_days_tokens() -> None:
    state = apply_usage(None, "thread_created", None)
    state = apply_usage(state, "thread_created", None)
    state = apply_usage(state, "thread_deleted", None)
    assert state["threads"] == 1
    state = apply_usage(state, "tokens", {"day": "2026-12-01", "tokens": 70})
    state = apply_usage(state, "tokens", {"day": "2026-12-01", "tokens": 30})
    assert state["tokens"] == 100
    state = apply_usage(state, "tokens", {"day": "2026-12-02", "tokens": 5})
    assert (state["day"], state["tokens"]) == ("2026-12-02", 5)  # a new day starts from zero
    assert apply_usage(apply_usage(None, "thread_deleted", None), "tokens", {"tokens": -1})["threads"] == 0


def test_thread_and_token_limits_refuse_with_a_retry_time() -> None:
    check_threads({"threads": 1}, 2)
    with pytest.raises(RateLimitedError, match="delete one"):
        check_threads({"threads": 2}, 2)
    check_threads({"threads": 99}, 0)
    now = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)
    with pytest.raises(RateLimitedError) as refused:
        check_tokens({"day": "2026-12-02", "tokens": 500}, 500, now)
    assert refused.value.retry_after == 3600
    check_tokens({"day": "2026-12-01", "tokens": 500}, 500, now)  # yesterday's count does not apply


def test_callers_are_principals_or_the_last_forwarded_address() -> None:
    assert caller_key("oid-1", {"X-Forwarded-For": "1.2.3.4"}) == "principal:oid-1"
    assert caller_key(None, {"x-forwarded-for": "6.6.6.6, 10.0.0.7"}) == "address:10.0.0.7"
    assert caller_key(None, {}) == "address:unknown"
    assert "oid-1" not in caller_digest("principal:oid-1") and len(caller_digest("x")) == 32
