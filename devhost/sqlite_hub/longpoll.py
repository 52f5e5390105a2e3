"""Optional long-poll for ``GetEntity`` and ``GetInstance``: wake waiters instead of polling.

Why this module exists: callers that wait for an entity or instance to change (a reply
appearing in a thread's history, an orchestration moving on) would otherwise poll in a
loop. With two gRPC metadata headers the hub holds the answer until something changed:

* ``x-durable-agent-wait-ms: N``: wait at most N ms (capped at ``MAX_WAIT_MS``, 2000);
* ``x-durable-agent-if-changed-since: T``: the last-modified time the caller already has,
  as ISO 8601 / RFC 3339 (e.g. ``2026-12-02T18:00:00.123456Z``; without a zone it is UTC),
  i.e. the ``lastModifiedTime`` (entity) or ``lastUpdatedTimestamp`` (instance) of the
  previous answer.

The hub answers as usual as soon as the entity's / instance's last-modified time is newer
than T (compared at the microsecond precision the answers carry), or when N ms have
passed. Something that does not exist has no last-modified time: a wait for it ends when
it is created (e.g. ``T`` = the epoch waits for an entity to appear) or at the timeout,
so a deletion is reported at the end of the wait. Without both headers nothing changes. Backends that
ignore the headers (the in-memory reference, Azure Durable Task Scheduler) answer at
once, so callers stay correct everywhere.

Waiters sleep on the hub's state condition variable (woken by every commit) and re-read
one row by primary key when woken. Each waiter holds an RPC thread for at most the wait,
and at most ``capacity`` wait at once (more answer at once), so worker streams and other
calls always find a thread: the server's pool is sized above that capacity.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import grpc

from devhost.sqlite_hub import events as ev
from devhost.sqlite_hub.timers import Signals

WAIT_HEADER = "x-durable-agent-wait-ms"
SINCE_HEADER = "x-durable-agent-if-changed-since"
MAX_WAIT_MS = 2000
# Waiters allowed at once; the server's RPC pool is larger (see server.py).
DEFAULT_CAPACITY = 256


class BadHeader(ValueError):
    """A long-poll header that cannot be understood (answered with INVALID_ARGUMENT)."""


def parse(metadata: tuple[tuple[str, str | bytes], ...] | None) -> tuple[float, datetime] | None:
    """(wait seconds, changed-since) from the request's metadata, or None without both headers."""
    headers = {key.lower(): value for key, value in metadata or () if isinstance(value, str)}
    wait, since = headers.get(WAIT_HEADER), headers.get(SINCE_HEADER)
    if wait is None or since is None:
        return None
    try:
        wait_ms = int(wait)
    except ValueError:
        raise BadHeader(f"{WAIT_HEADER} must be a whole number of milliseconds, not {wait!r}") from None
    try:
        moment = datetime.fromisoformat(since.strip())
    except ValueError:
        raise BadHeader(f"{SINCE_HEADER} must be an ISO 8601 time, not {since!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0, wait_ms) / 1000.0, moment


class LongPoll:
    """Holds long-polling ``Get*`` calls until their row changes; counts how each ended."""

    def __init__(self, signals: Signals, capacity: int = DEFAULT_CAPACITY) -> None:
        self.signals = signals
        self.capacity = capacity
        # Seconds a waiter may wait at most (MAX_WAIT_MS; tests raise it).
        self.max_wait = MAX_WAIT_MS / 1000.0
        self.outcomes: Counter[str] = Counter()  # changed / timeout / over_capacity
        self._lock = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        with self._lock:
            return self._waiting

    def _record(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def wait(
        self,
        context: grpc.ServicerContext,
        read: Callable[[Callable[[sqlite3.Connection], float | None]], float | None],
        modified: Callable[[sqlite3.Connection], float | None],
    ) -> None:
        """Returns when the row ``modified`` reads changed or at the timeout; at once without headers.

        ``read`` runs a function on the hub's connection; ``modified`` gives the row's
        last-modified time (epoch seconds) or None when it does not exist.
        """
        request = parse(context.invocation_metadata())
        if request is None:
            return
        wait, since = request
        with self._lock:
            if self._waiting >= self.capacity:
                self.outcomes["over_capacity"] += 1
                return
            self._waiting += 1
        try:
            self._record(self._wait(context, read, modified, min(wait, self.max_wait), since))
        finally:
            with self._lock:
                self._waiting -= 1

    def _wait(
        self,
        context: grpc.ServicerContext,
        read: Callable[[Callable[[sqlite3.Connection], float | None]], float | None],
        modified: Callable[[sqlite3.Connection], float | None],
        wait: float,
        since: datetime,
    ) -> str:
        remaining_rpc = context.time_remaining()
        if remaining_rpc is not None:
            wait = min(wait, max(0.0, remaining_rpc - 0.05))
        deadline = time.monotonic() + wait
        while True:
            seen = self.signals.state_gen
            value = read(modified)
            if value is not None and ev.to_datetime(value) > since:
                return "changed"
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.signals.closed or not context.is_active():
                return "timeout"
            self.signals.wait_state(seen, remaining)
