"""The retry policy on its own: what is retried, how long it waits, when it gives up."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from agent.errors import ContentFilteredError, ModelRejectedError, ModelUnavailableError
from agent.retry import RetryPolicy, TransientModelError, is_transient_status, retry_after_seconds
from agent.settings import RetrySettings
from tests.fakes.clock import FakeClock


def policy(
    clock: FakeClock, *, attempts: int = 5, total: float = 120.0, timeout: float = 60.0, **kw: Any
) -> RetryPolicy:
    settings = RetrySettings(timeout_seconds=timeout, max_attempts=attempts, max_total_seconds=total)
    return RetryPolicy(settings, sleep=clock.sleep, clock=clock.now, **kw)


class Script:
    """An attempt function that raises the scripted errors in order, then returns 'ok'."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.timeouts: list[float] = []

    def __call__(self, timeout: float) -> str:
        self.timeouts.append(timeout)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (408, True),
        (409, True),
        (429, True),
        (500, True),
        (503, True),
        (599, True),
        (600, False),  # not an HTTP status a server may send; nothing to retry
        (407, False),
        (410, False),
        (499, False),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
    ],
)
def test_transient_statuses(status: int, transient: bool) -> None:
    assert is_transient_status(status) is transient


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"Retry-After": format_datetime(now + timedelta(seconds=30))}, now=now) == 30.0
    assert retry_after_seconds({"Retry-After": "-4"}) == 0.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({"retry-after-ms": "x", "Retry-After": "2"}) == 2.0
    assert retry_after_seconds({}) is None


def test_retry_after_edge_cases() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    # negative and past waits are no wait at all, in every form
    assert retry_after_seconds({"retry-after-ms": "-5"}) == 0.0
    assert retry_after_seconds({"Retry-After": format_datetime(now - timedelta(seconds=30))}, now=now) == 0.0
    # an HTTP date in "-0000" form parses without a zone: it is UTC
    naive = format_datetime((now + timedelta(seconds=30)).replace(tzinfo=None))
    assert naive.endswith("-0000")
    assert retry_after_seconds({"Retry-After": naive}, now=now) == 30.0
    # without `now`, the wall clock (in UTC) is the reference
    later = datetime.now(UTC) + timedelta(hours=1)
    assert retry_after_seconds({"Retry-After": format_datetime(later)}) == pytest.approx(3600, abs=5)
    # values that are numbers but not finite are no hint
    assert retry_after_seconds({"Retry-After": "inf"}) is None
    assert retry_after_seconds({"Retry-After": "nan"}) is None
    assert retry_after_seconds({"retry-after-ms": "inf", "Retry-After": "2"}) == 2.0


class StepClock:
    """A clock that moves only when slept on, so budget boundaries are exact."""

    def __init__(self) -> None:
        self.time = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds


def test_a_wait_that_would_end_exactly_at_the_budget_is_not_taken() -> None:
    clock = StepClock()
    settings = RetrySettings(timeout_seconds=60.0, max_attempts=10, max_total_seconds=10.0)
    script = Script(*[TransientModelError("429", retry_after=5.0) for _ in range(5)])
    with pytest.raises(ModelUnavailableError, match="10s retry budget"):
        RetryPolicy(settings, sleep=clock.sleep, clock=clock.now).call(script)
    # t=0 fails, wait 5; t=5 fails, and 5 + 5 reaches the budget: stop, no third attempt.
    assert clock.sleeps == [5.0]
    assert len(script.timeouts) == 2


def test_one_attempt_is_singular_and_the_default_name_is_model_call() -> None:
    with pytest.raises(ModelUnavailableError) as raised:
        policy(FakeClock(), attempts=1).call(Script(TransientModelError("HTTP 500")))
    assert str(raised.value).startswith("model call failed after 1 attempt in ")


def test_a_permanent_failure_is_logged_as_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agent.retry")
    with pytest.raises(ModelRejectedError):
        policy(FakeClock()).call(Script(ModelRejectedError("HTTP 401 from x")), what="chat completion")
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["chat completion failed: HTTP 401 from x; not retried"]


def test_transient_failures_are_retried_until_success() -> None:
    clock = FakeClock()
    script = Script(TransientModelError("HTTP 500"), TransientModelError("HTTP 503"))
    assert policy(clock).call(script) == "ok"
    assert len(script.timeouts) == 3
    assert len(clock.sleeps) == 2


def test_backoff_is_exponential_with_full_jitter() -> None:
    clock = FakeClock()
    failures = [TransientModelError("boom") for _ in range(6)]
    policy(clock, attempts=7, rand=lambda: 1.0, base_delay=0.5, max_delay=4.0).call(Script(*failures))
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    jittered = policy(FakeClock(), rand=lambda: 0.25)
    assert [jittered.backoff(n) for n in (1, 2, 3)] == [0.125, 0.25, 0.5]


def test_real_jitter_stays_within_the_ceiling() -> None:
    real = policy(FakeClock(), base_delay=1.0, max_delay=8.0)
    for attempt in range(1, 8):
        for _ in range(50):
            assert 0.0 <= real.backoff(attempt) <= min(8.0, 2 ** (attempt - 1))


def test_retry_after_is_honoured_and_capped() -> None:
    clock = FakeClock()
    script = Script(
        TransientModelError("429", retry_after=2.0),
        TransientModelError("429", retry_after=500.0),
    )
    policy(clock, total=1000.0, max_retry_after=30.0).call(script)
    assert clock.sleeps == [2.0, 30.0]


def test_attempt_limit_gives_up_with_a_useful_message(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    script = Script(*[TransientModelError("HTTP 503 from model") for _ in range(10)])
    caplog.set_level(logging.WARNING, logger="agent.retry")
    with pytest.raises(ModelUnavailableError) as raised:
        policy(clock, attempts=3).call(script, what="chat completion")
    assert len(script.timeouts) == 3
    message = str(raised.value)
    assert "3 attempts" in message
    assert "attempt limit 3" in message
    assert "HTTP 503 from model" in message
    assert raised.value.retryable is True
    assert isinstance(raised.value.__cause__, TransientModelError)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("chat completion attempt 1/3 failed: HTTP 503 from model; retrying in ")
    assert lines[2] == "chat completion attempt 3/3 failed: HTTP 503 from model; giving up"


def test_total_time_limit_stops_before_a_wait_that_would_overrun() -> None:
    clock = FakeClock()
    script = Script(*[TransientModelError("429", retry_after=4.0) for _ in range(10)])
    with pytest.raises(ModelUnavailableError, match="retry budget"):
        policy(clock, attempts=10, total=10.0).call(script)
    # attempts at t=0, 4 and 8; a fourth would start at 12 > 10.
    assert len(script.timeouts) == 3
    assert clock.sleeps == [4.0, 4.0]


def test_attempt_timeout_shrinks_to_fit_the_total_budget() -> None:
    clock = FakeClock()
    script = Script(TransientModelError("x", retry_after=7.0), TransientModelError("x", retry_after=7.0))
    policy(clock, total=20.0, timeout=10.0).call(script)
    assert script.timeouts[0] == 10.0
    assert script.timeouts[2] == pytest.approx(6.0, abs=0.05)


@pytest.mark.parametrize(
    "failure", [ModelRejectedError("HTTP 401"), ContentFilteredError("filtered"), ValueError("a bug")]
)
def test_permanent_failures_are_not_retried(failure: Exception) -> None:
    clock = FakeClock()
    script = Script(failure)
    with pytest.raises(type(failure)) as raised:
        policy(clock).call(script)
    assert raised.value is failure
    assert len(script.timeouts) == 1
    assert clock.sleeps == []
