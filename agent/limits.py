"""Per-caller limits: messages per minute, threads per caller, model tokens per UTC day.

Why this module exists: an open agent API is an open tab on a model bill. Limits are
checked at the API boundary before anything is written, so a refused request (429 with
Retry-After) leaves no trace. A caller is the signed-in principal, or, without sign-in,
the client address (the last X-Forwarded-For hop, which the front end adds).

- Messages per minute are counted in each host process (a sliding window in memory): a
  per-instance guard that costs no durable work per message; with N instances in Azure a
  caller can reach N times the limit.
- Threads per caller and tokens per day are durable: a `caller` entity (keyed by a digest
  of the caller) counts threads (+1 on create, -1 on delete) and the day's tokens (the
  thread adds each turn's usage, only while RATE_LIMIT_TOKENS_PER_DAY is on).

The counting rules are pure functions, unit-tested; the entity adapts them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from agent.errors import DurableAgentError

#: callers whose recent messages a process remembers (the oldest are forgotten first)
MAX_TRACKED_CALLERS = 10_000


class RateLimitedError(DurableAgentError):
    """The caller is over a limit; `retry_after` says when trying again can help."""

    code = "rate_limited"
    http_status = 429
    retryable = True

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))


def caller_key(principal: str | None, headers: Mapping[str, str]) -> str:
    """Who is calling: the principal, else the address the front end saw."""
    if principal:
        return f"principal:{principal}"
    forwarded = next((v for k, v in headers.items() if k.lower() == "x-forwarded-for"), "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    return f"address:{hops[-1]}" if hops else "address:unknown"


def caller_digest(caller: str) -> str:
    """The caller entity's key: a digest, so no principal id or address is stored."""
    return hashlib.sha256(caller.encode("utf-8")).hexdigest()[:32]


class MessageRateLimiter:
    """Sliding one-minute window per caller, in this process; thread-safe."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sent: OrderedDict[str, deque[float]] = OrderedDict()

    def admit(self, caller: str, per_minute: int) -> None:
        """Count one message, or raise RateLimitedError (and count nothing)."""
        if per_minute <= 0:
            return
        now = self._clock()
        with self._lock:
            sent = self._sent.setdefault(caller, deque())
            self._sent.move_to_end(caller)
            while sent and sent[0] <= now - 60:
                sent.popleft()
            if len(sent) >= per_minute:
                raise RateLimitedError(
                    f"Too many messages: at most {per_minute} a minute (RATE_LIMIT_MESSAGES_PER_MINUTE); "
                    "wait before sending more.",
                    retry_after=sent[0] + 60 - now,
                )
            sent.append(now)
            while len(self._sent) > MAX_TRACKED_CALLERS:
                self._sent.popitem(last=False)


def utc_day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def seconds_to_next_day(moment: datetime) -> float:
    midnight = datetime(moment.year, moment.month, moment.day, tzinfo=moment.tzinfo) + timedelta(days=1)
    return (midnight - moment).total_seconds()


def apply_usage(state: Any, operation: str, arg: Any) -> dict[str, Any]:
    """The caller entity's state after one operation (`thread_created`, `thread_deleted`,
    `tokens` with {"day", "tokens"})."""
    current = dict(state) if isinstance(state, Mapping) else {}
    threads = int(current.get("threads") or 0)
    if operation == "thread_created":
        current["threads"] = threads + 1
    elif operation == "thread_deleted":
        current["threads"] = max(0, threads - 1)
    elif operation == "tokens":
        data = arg if isinstance(arg, Mapping) else {}
        day, used = str(data.get("day") or ""), data.get("tokens")
        if isinstance(used, int) and not isinstance(used, bool) and used > 0 and day:
            if current.get("day") != day:
                current["day"], current["tokens"] = day, 0
            current["tokens"] = int(current.get("tokens") or 0) + used
    return current


def check_threads(state: Any, limit: int) -> None:
    if limit <= 0:
        return
    threads = int(state.get("threads") or 0) if isinstance(state, Mapping) else 0
    if threads >= limit:
        raise RateLimitedError(
            f"You already have {threads} threads, the most allowed (RATE_LIMIT_THREADS_PER_PRINCIPAL); "
            "delete one first.",
            retry_after=3600,
        )


def check_tokens(state: Any, limit: int, now: datetime) -> None:
    if limit <= 0 or not isinstance(state, Mapping) or state.get("day") != utc_day(now):
        return
    used = int(state.get("tokens") or 0)
    if used >= limit:
        raise RateLimitedError(
            f"Today's model budget is used up ({used} of {limit} tokens, RATE_LIMIT_TOKENS_PER_DAY); "
            "it resets at midnight UTC.",
            retry_after=seconds_to_next_day(now),
        )
