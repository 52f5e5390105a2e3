"""Optional long-poll for ``GetEntity`` and ``GetInstance``: wake waiters instead of polling.

Why this module exists: callers that wait for an entity or instance to change (a reply
appearing in a thread's history, an orchestration moving on) would otherwise poll in a
loop. With two gRPC metadata headers the hub holds the answer until something changed:

* ``x-durable-agent-wait-ms: N``: wait at most N ms (capped at ``MAX_WAIT_MS``, 10000);
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

Waiters are registered by key; after each commit one query per table reads the waited
rows and wakes only the waiters whose row changed (a commit costs waiters nothing unless
it concerns them). Each waiter holds an RPC thread for at most the wait,
and at most ``capacity`` wait at once (more answer at once), so worker streams and other
calls always find a thread: the server's pool is sized above that capacity.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import grpc

from devhost.sqlite_hub import events as ev

WAIT_HEADER = "x-durable-agent-wait-ms"
SINCE_HEADER = "x-durable-agent-if-changed-since"
MAX_WAIT_MS = 10_000
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


# What a long-poll may wait on: the table, its key column and its last-modified column.
Kind = Literal["entity", "instance"]
_ROWS: dict[str, tuple[str, str, str]] = {
    "entity": ("entities", "entity_id", "last_modified"),
    "instance": ("instances", "instance_id", "last_updated_at"),
}


@dataclass(eq=False)
class _Waiter:
    kind: Kind
    key: str
    since: datetime
    woken: threading.Event = field(default_factory=threading.Event)


def _changed(value: float | None, since: datetime) -> bool:
    return value is not None and ev.to_datetime(value) > since


def modified(conn: sqlite3.Connection, kind: Kind, keys: list[str]) -> dict[str, float]:
    """The last-modified times (epoch seconds) of the given rows that exist."""
    table, key_column, time_column = _ROWS[kind]
    rows = conn.execute(
        f"SELECT {key_column}, {time_column} FROM {table}"  # noqa: S608 (constants)
        f" WHERE {key_column} IN (SELECT value FROM json_each(?))",
        (json.dumps(keys),),
    ).fetchall()
    return {str(r[0]): float(r[1]) for r in rows}


class LongPoll:
    """Holds long-polling ``Get*`` calls until their row changes; counts how each ended.

    Waiters are registered by key. After each commit the hub calls ``after_commit``,
    which reads the waited rows in one query per table and wakes only the waiters whose
    row changed, so a commit costs the waiters nothing unless it concerns them.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        # Seconds a waiter may wait at most (MAX_WAIT_MS; tests raise it).
        self.max_wait = MAX_WAIT_MS / 1000.0
        self.outcomes: Counter[str] = Counter()  # changed / timeout / over_capacity
        self.wakeups = 0  # waiters woken by a commit that changed their row
        self._lock = threading.Lock()
        self._waiters: set[_Waiter] = set()
        self._closed = False

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    def close(self) -> None:
        """Ends every wait (the hub is stopping)."""
        with self._lock:
            self._closed = True
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.woken.set()

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """Wakes the waiters whose row changed; call after every commit, under the storage lock."""
        with self._lock:
            if not self._waiters:
                return
            waiters = list(self._waiters)
        for kind in ("entity", "instance"):
            mine = [w for w in waiters if w.kind == kind]
            if not mine:
                continue
            times = modified(conn, kind, sorted({w.key for w in mine}))
            for waiter in mine:
                if _changed(times.get(waiter.key), waiter.since):
                    waiter.woken.set()
                    with self._lock:
                        self.wakeups += 1

    def wait(
        self,
        context: grpc.ServicerContext,
        read: Callable[[Callable[[sqlite3.Connection], dict[str, float]]], dict[str, float]],
        kind: Kind,
        key: str,
    ) -> None:
        """Returns when the row changed or at the timeout; at once without the headers.

        ``read`` runs a function on the hub's connection (under its lock).
        """
        request = parse(context.invocation_metadata())
        if request is None:
            return
        wait, since = request
        waiter = _Waiter(kind, key, since)
        with self._lock:
            if len(self._waiters) >= self.capacity or self._closed:
                self.outcomes["over_capacity" if not self._closed else "timeout"] += 1
                return
            self._waiters.add(waiter)
        try:
            outcome = self._wait(context, read, waiter, min(wait, self.max_wait))
        finally:
            with self._lock:
                self._waiters.discard(waiter)
        with self._lock:
            self.outcomes[outcome] += 1

    def _wait(
        self,
        context: grpc.ServicerContext,
        read: Callable[[Callable[[sqlite3.Connection], dict[str, float]]], dict[str, float]],
        waiter: _Waiter,
        wait: float,
    ) -> str:
        remaining_rpc = context.time_remaining()
        if remaining_rpc is not None:
            wait = min(wait, max(0.0, remaining_rpc - 0.05))
        deadline = time.monotonic() + wait
        # Registered before this read: a commit after it wakes the waiter, one before it shows here.
        times = read(lambda conn: modified(conn, waiter.kind, [waiter.key]))
        while not _changed(times.get(waiter.key), waiter.since):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed or not context.is_active():
                return "timeout"
            # Woken by a change to the row or by close(); at least every second, to
            # notice a cancelled call.
            waiter.woken.wait(min(remaining, 1.0))
            waiter.woken.clear()
            times = read(lambda conn: modified(conn, waiter.kind, [waiter.key]))
        return "changed"
