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

File modes and the one-hub-per-file owner lock are in ``files.py``.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from devhost.sqlite_hub import faults, migrations
from devhost.sqlite_hub.files import HubInUseError, OwnerLock, make_dirs, tighten

Durability = Literal["full", "normal"]

BUSY_TIMEOUT_MS = 10_000

__all__ = ["BUSY_TIMEOUT_MS", "Durability", "HubInUseError", "Storage"]


class TransactionAudit:
    """Counts the transactions SQLite commits on the hub's connection, from its own trace.

    Independent of ``Storage.commits`` (which counts ``write()`` blocks): every ``COMMIT``
    statement counts, and so does any write statement run outside an explicit
    transaction (SQLite commits it on its own), which the hub should never do. Off by
    default: tracing expands every statement's parameters, payloads included.
    """

    _WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")

    def __init__(self) -> None:
        self.commits = 0
        self.implicit_writes: list[str] = []
        self._conn: sqlite3.Connection | None = None

    def attach(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        conn.set_trace_callback(self._statement)

    def _statement(self, sql: str) -> None:
        verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if verb in ("COMMIT", "END"):
            self.commits += 1
        elif verb in self._WRITES and self._conn is not None and not self._conn.in_transaction:
            self.commits += 1
            self.implicit_writes.append(sql[:200])


class Storage:
    """Owns the hub's single SQLite connection."""

    def __init__(self, path: pathlib.Path, durability: Durability = "normal") -> None:
        if durability not in ("full", "normal"):
            raise ValueError(f"durability must be 'full' or 'normal', not {durability!r}")
        self.path = path
        self.durability: Durability = durability
        self.lock = threading.RLock()
        self.commits = 0
        # Tests turn this on before open(): SQLite itself then reports every statement, and
        # ``audit`` counts the transactions it really committed (see ``TransactionAudit``).
        self.audit_transactions = False
        self.audit = TransactionAudit()
        self.faults = faults.FaultLog(path)
        self._conn: sqlite3.Connection | None = None
        self._owner: OwnerLock | None = None
        self._in_write = False

    def open(self) -> None:
        """Creates parent folders and the file if missing, applies pragmas and migrations.

        New folders are made 0700 and the database with its ``-wal``/``-shm`` files 0600
        (explicit modes and ``chmod``, not the process-wide umask, which other threads of
        devhost share). SQLite creates ``-wal``/``-shm`` with the database file's mode.
        """
        with self.lock:
            if self._conn is not None:
                return
            make_dirs(self.path.parent)
            owner = OwnerLock(self.path)
            owner.acquire(self.path)
            self._owner = owner
            real = owner.real
            self.faults.path = real
            tighten(real)
            try:
                conn = sqlite3.connect(
                    str(real), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
                )
            except BaseException:
                self._release()
                raise
            try:
                owner.verify()
                conn.row_factory = sqlite3.Row
                if self.audit_transactions:
                    self.audit.attach(conn)
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                # Deleted rows (a purged conversation, a deleted entity) are zeroed, not
                # left readable in free pages; some SQLite builds default to this, not all.
                conn.execute("PRAGMA secure_delete = ON")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise RuntimeError(f"could not put {self.path} in WAL mode (got {mode!r})")
                sync = "FULL" if self.durability == "full" else "NORMAL"
                conn.execute(f"PRAGMA synchronous = {sync}")
                migrations.migrate(conn)
                for suffix in ("-wal", "-shm"):
                    tighten(real.with_name(real.name + suffix))
            except BaseException:
                conn.close()
                self._release()
                raise
            self._conn = conn

    def _release(self) -> None:
        if self._owner is not None:
            self._owner.release()
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
        """One explicit transaction. Nested use joins the outer transaction.

        Any failure rolls the whole transaction back. A full disk or read-only database
        (at any statement or at COMMIT) raises ``faults.StorageUnavailable``.
        """
        with self.lock:
            conn = self.conn
            if self._in_write:
                yield conn
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                self._raise_fault(error)
                raise
            self._in_write = True
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as error:
                # A failed COMMIT (e.g. SQLITE_FULL) may leave the transaction open.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                self._raise_fault(error)
                raise
            finally:
                self._in_write = False
            self.commits += 1
            self.faults.succeeded()

    def _raise_fault(self, error: BaseException) -> None:
        fault = faults.classify(error)
        if fault is not None:
            raise self.faults.failed(fault) from error

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.conn

    def integrity_check(self) -> str:
        with self.read() as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)
