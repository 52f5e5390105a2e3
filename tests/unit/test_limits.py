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


def test_a_retry_time_is_whole_seconds_and_at_least_one() -> None:
    assert RateLimitedError("slow down", retry_after=0.2).retry_after == 1
    assert RateLimitedError("slow down", retry_after=1.0).retry_after == 1
    assert RateLimitedError("slow down", retry_after=1.2).retry_after == 2


def test_refusals_say_which_limit_and_what_to_do() -> None:
    limiter = MessageRateLimiter(FakeClock())
    limiter.admit("c", 1)
    with pytest.raises(RateLimitedError) as message:
        limiter.admit("c", 1)
    assert str(message.value).endswith("RATE_LIMIT_MESSAGES_PER_MINUTE); wait before sending more.")
    with pytest.raises(RateLimitedError) as threads:
        check_threads({"threads": 1}, 1)
    assert str(threads.value).endswith("delete one first.")
    assert threads.value.retry_after == 3600
    now = datetime(2026, 12, 3, 23, 0, tzinfo=UTC)
    with pytest.raises(RateLimitedError) as tokens:
        check_tokens({"day": "2026-12-03", "tokens": 1}, 1, now)
    assert str(tokens.value).endswith("it resets at midnight UTC.")
    assert tokens.value.retry_after == 3600


def test_a_limit_of_one_is_a_limit_and_zero_is_none() -> None:
    check_threads({"threads": 0}, 1)
    check_threads(None, 1)
    check_threads({}, 1)
    check_threads({"threads": 5}, 0)
    now = datetime(2026, 12, 3, tzinfo=UTC)
    check_tokens({"day": "2026-12-03"}, 1, now)
    check_tokens({"day": "2026-12-03", "tokens": 5}, 0, now)
    with pytest.raises(RateLimitedError):
        check_tokens({"day": "2026-12-03", "tokens": 1}, 1, now)


def test_token_usage_needs_a_day_and_a_positive_whole_count() -> None:
    start = {"threads": 2, "day": "2026-12-03", "tokens": 10}
    for arg in (
        None,
        "30",
        {"tokens": 30},
        {"day": "", "tokens": 30},
        {"day": "2026-12-03", "tokens": 0},
        {"day": "2026-12-04", "tokens": 0},  # no tokens: not even a new day starts
        {"day": "2026-12-03", "tokens": -5},
        {"day": "2026-12-03", "tokens": True},
        {"day": "2026-12-03", "tokens": 2.5},
    ):
        assert apply_usage(start, "tokens", arg) == start, arg
    assert apply_usage(start, "tokens", {"day": "2026-12-03", "tokens": 1})["tokens"] == 11


def test_the_oldest_caller_is_forgotten_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.limits.MAX_TRACKED_CALLERS", 2)
    limiter = MessageRateLimiter(FakeClock())
    limiter.admit("a", 1)
    limiter.admit("b", 1)
    limiter.admit("c", 1)  # three callers: "a", the oldest, is forgotten
    limiter.admit("a", 1)  # so "a" may send again
    with pytest.raises(RateLimitedError):
        limiter.admit("c", 1)  # "c" is still remembered
    with pytest.raises(RateLimitedError):
        limiter.admit("a", 1)


def test_the_last_forwarded_hop_is_the_caller() -> None:
    assert caller_key(None, {"X-Forwarded-For": "10.0.0.1, 10.0.0.2,  10.0.0.3 "}) == "address:10.0.0.3"
    assert caller_key(None, {"x-forwarded-for": "10.0.0.1,10.0.0.2"}) == "address:10.0.0.2"
