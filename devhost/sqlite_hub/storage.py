"""The storage layer: one SQLite connection, one writer at a time.

Why this module exists: every state transition of the hub (a step applied, an activity
result accepted, an event raised...) must be ONE explicit SQLite transaction, all or
nothing, and transactions must never interleave. This module owns the connection, its
pragmas (WAL, ``synchronous`` from the durability setting, ``busy_timeout``) and the
``write()`` / ``read()`` context managers every other module goes through.

The interface is deliberately small:

* ``Storage(path, durability)``, ``open()``, ``close()``
* ``write()``: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)
* ``read()``: consistent reads under the same lock
* ``lock``: the re-entrant lock that serialises all access (callers that must keep
  in-memory bookkeeping consistent with the database hold it around both)
* ``commits``: how many write transactions were committed (for the benchmark)
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Literal

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from devhost.sqlite_hub import migrations

Durability = Literal["full", "normal"]

BUSY_TIMEOUT_MS = 10_000


class HubInUseError(RuntimeError):
    """Another task hub process already serves this database file."""


def _claim(path: pathlib.Path) -> IO[str] | None:
    """Take the exclusive owner lock beside the database, or raise HubInUseError.

    Leases live in the serving process's memory, so two hubs on one file would hand the
    same work out twice. The lock is an OS file lock: a killed process drops it at once.
    """
    if fcntl is None:  # platforms without flock get no guard
        return None  # type: ignore[unreachable]
    handle = open(path.with_name(path.name + ".owner"), "a+", encoding="utf-8")  # noqa: SIM115 - held open
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise HubInUseError(
            f"{path} is already served by another task hub (pid {owner}); stop it or use another database"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


class Storage:
    """Owns the hub's single SQLite connection."""

    def __init__(self, path: pathlib.Path, durability: Durability = "normal") -> None:
        if durability not in ("full", "normal"):
            raise ValueError(f"durability must be 'full' or 'normal', not {durability!r}")
        self.path = path
        self.durability: Durability = durability
        self.lock = threading.RLock()
        self.commits = 0
        self._conn: sqlite3.Connection | None = None
        self._owner: IO[str] | None = None
        self._in_write = False

    def open(self) -> None:
        """Creates parent directories and the file if missing, applies pragmas and migrations."""
        with self.lock:
            if self._conn is not None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._owner = _claim(self.path)
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            try:
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise RuntimeError(f"could not put {self.path} in WAL mode (got {mode!r})")
                sync = "FULL" if self.durability == "full" else "NORMAL"
                conn.execute(f"PRAGMA synchronous = {sync}")
                migrations.migrate(conn)
            except BaseException:
                conn.close()
                self._release()
                raise
            self._conn = conn

    def _release(self) -> None:
        if self._owner is not None:
            self._owner.close()  # closing the file drops the lock
            self._owner = None

    def close(self) -> None:
        """Closes the connection; a clean close folds the WAL back into the main file."""
        with self.lock:
            if self._conn is not None:
                # If another connection holds the file the WAL simply stays (still valid).
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._conn.close()
                self._conn = None
            self._release()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("storage is not open")
        return self._conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One explicit transaction. Nested use joins the outer transaction."""
        with self.lock:
            conn = self.conn
            if self._in_write:
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            self._in_write = True
            try:
                yield conn
            except BaseException:
                self._in_write = False
                conn.execute("ROLLBACK")
                raise
            self._in_write = False
            conn.execute("COMMIT")
            self.commits += 1

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.conn

    def integrity_check(self) -> str:
        with self.read() as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)
