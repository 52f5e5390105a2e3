"""Durable timers, delayed messages and the wake-ups that deliver them on time.

Why this module exists: a durable timer is simply an inbox row whose ``visible_at`` is
in the future (a delayed entity signal likewise in ``entity_inbox``, a scheduled start
likewise for ``executionStarted``). Because it lives in the database it survives a
restart and fires on time afterwards. Nothing polls for it: a ``GetWorkItems`` stream
that finds no work sleeps on ``Signals`` until the earliest of (next timer due, next
lease expiry, next health ping) or until a commit wakes it.

``Signals`` also wakes ``WaitForInstanceStart/Completion`` callers when instance state
changes. Generation counters make the wake-ups race-free: a waiter records the
generation before looking at the database and sleeps only while it is unchanged.
"""

from __future__ import annotations

import sqlite3
import threading
import time


class Signals:
    """Condition variables for 'new work may be available' and 'instance state changed'."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._work_gen = 0
        self._state_gen = 0
        self.closed = False

    @property
    def work_gen(self) -> int:
        with self._cond:
            return self._work_gen

    @property
    def state_gen(self) -> int:
        with self._cond:
            return self._state_gen

    def notify(self, *, work: bool = True, state: bool = True) -> None:
        with self._cond:
            if work:
                self._work_gen += 1
            if state:
                self._state_gen += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._work_gen += 1
            self._state_gen += 1
            self._cond.notify_all()

    def wait_work(self, seen: int, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._work_gen == seen and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def wait_state(self, seen: int, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._state_gen == seen and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)


def next_due(conn: sqlite3.Connection, now: float) -> float | None:
    """The earliest future ``visible_at`` of any timer, delayed signal or scheduled start."""
    row = conn.execute(
        "SELECT MIN(t) FROM ("
        " SELECT MIN(visible_at) AS t FROM inbox WHERE visible_at > ?1"
        " UNION ALL SELECT MIN(visible_at) FROM entity_inbox WHERE visible_at > ?1)",
        (now,),
    ).fetchone()
    return None if row[0] is None else float(row[0])
