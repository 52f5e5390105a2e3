"""The one retry policy for model calls: which failures to retry, how long to wait, when to stop.

The openai SDK's own retries are turned off so that this module alone decides. A failed
attempt that may succeed next time (HTTP 408, 409, 429, 5xx, timeouts, connection errors,
malformed bodies) is raised by the caller as `TransientModelError`; everything else
(400/401/403/404, content filter) propagates at once. Waits use exponential backoff with
full jitter unless the server sent `Retry-After` / `retry-after-ms`, which is honoured up to
a cap. The policy stops at whichever comes first: `max_attempts`, or a wait that would push
the call past `max_total_seconds`; it then raises `ModelUnavailableError` saying what
happened. Sleep, clock and randomness are injectable so tests never sleep for real.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import tenacity

from agent.errors import ModelCallError, ModelUnavailableError
from agent.settings import RetrySettings

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 409, 429})
DEFAULT_BASE_DELAY = 0.5
DEFAULT_MAX_DELAY = 20.0
DEFAULT_MAX_RETRY_AFTER = 60.0
# An attempt never gets less time than this, however little of the budget is left.
MIN_ATTEMPT_TIMEOUT = 0.05


class TransientModelError(ModelCallError):
    """One attempt failed in a way another attempt may fix; only the retry policy sees it."""

    code = "model_transient"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def is_transient_status(status: int) -> bool:
    """True for HTTP statuses worth another attempt: 408, 409, 429 and every 5xx."""
    return status in TRANSIENT_STATUSES or 500 <= status <= 599


def retry_after_seconds(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The wait a response asks for via `retry-after-ms` or `Retry-After` (seconds or HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(value, 0.0)
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
    return max(value, 0.0) if math.isfinite(value) else None


class RetryPolicy:
    """Runs one model call under the retry rules above; safe to share between threads."""

    def __init__(
        self,
        settings: RetrySettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        base_delay: float = DEFAULT_BASE_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff before retry number `attempt` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 30))
        return self._rand() * ceiling

    def delay_for(self, error: BaseException | None, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt`: the server's hint if any, else backoff."""
        if isinstance(error, TransientModelError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        return self.backoff(attempt)

    def call[T](self, attempt_fn: Callable[[float], T], *, what: str = "model call") -> T:
        """Call `attempt_fn(timeout)` until it returns, fails for good, or the policy gives up.

        `timeout` is the per-request timeout, shortened near the end of the total budget so
        the whole call stays within `max_total_seconds`.
        """
        limits = self.settings
        start = self._clock()
        stop_reason: list[str] = []

        def elapsed() -> float:
            return self._clock() - start

        def attempt() -> T:
            remaining = limits.max_total_seconds - elapsed()
            return attempt_fn(max(min(limits.timeout_seconds, remaining), MIN_ATTEMPT_TIMEOUT))

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.delay_for(error, state.attempt_number)

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number >= limits.max_attempts:
                stop_reason.append(f"attempt limit {limits.max_attempts} reached")
                return True
            spent = elapsed()
            if spent + state.upcoming_sleep >= limits.max_total_seconds:
                stop_reason.append(
                    f"waiting {state.upcoming_sleep:.2f}s more would exceed the "
                    f"{limits.max_total_seconds:g}s retry budget"
                )
                return True
            return False

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s attempt %d/%d failed: %s; retrying in %.2fs",
                what,
                state.attempt_number,
                limits.max_attempts,
                _describe(error),
                state.upcoming_sleep,
            )

        retrying = tenacity.Retrying(
            sleep=self._sleep,
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception_type(TransientModelError),
            before_sleep=before_sleep,
            reraise=False,
        )
        try:
            return retrying(attempt)
        except tenacity.RetryError as exhausted:
            last = exhausted.last_attempt.exception()
            attempts = exhausted.last_attempt.attempt_number
            reason = stop_reason[-1] if stop_reason else "retry policy stopped"
            message = (
                f"{what} failed after {attempts} attempt{'s' if attempts != 1 else ''} "
                f"in {elapsed():.1f}s ({reason}); last error: {_describe(last)}"
            )
            log.warning(
                "%s attempt %d/%d failed: %s; giving up", what, attempts, limits.max_attempts, _describe(last)
            )
            raise ModelUnavailableError(message) from last
        except ModelCallError as final:
            log.warning("%s failed: %s; not retried", what, _describe(final))
            raise


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "no error recorded"
    if isinstance(error, ModelCallError):
        return error.message
    return f"{type(error).__name__}"
