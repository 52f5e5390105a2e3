"""The storage layer: file creation, pragmas, migrations and the durability setting."""

from __future__ import annotations

import pathlib
import re
import socket
import sqlite3

import pytest

from devhost.sqlite_hub import SqliteSidecar, migrations
from devhost.sqlite_hub.storage import Storage, TransactionAudit


def test_creates_parent_dirs_and_schema(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "a" / "b" / "hub.db"
    storage = Storage(path)
    storage.open()
    try:
        conn = storage.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"instances", "history", "inbox", "activities", "entities", "entity_inbox"} <= tables
    finally:
        storage.close()
    reopened = Storage(path)
    reopened.open()  # migrations are idempotent
    reopened.close()


@pytest.mark.parametrize(("durability", "expected"), [("full", 2), ("normal", 1)])
def test_durability_sets_synchronous(tmp_path: pathlib.Path, durability: str, expected: int) -> None:
    storage = Storage(tmp_path / "hub.db", durability)  # type: ignore[arg-type]
    storage.open()
    try:
        assert storage.conn.execute("PRAGMA synchronous").fetchone()[0] == expected
    finally:
        storage.close()


def test_rejects_unknown_durability(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        Storage(tmp_path / "hub.db", "sometimes")  # type: ignore[arg-type]


def test_refuses_newer_schema(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "hub.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        Storage(path).open()


def test_write_is_all_or_nothing(tmp_path: pathlib.Path) -> None:
    storage = Storage(tmp_path / "hub.db")
    storage.open()
    try:

        def failing_transaction() -> None:
            with storage.write() as conn:
                conn.execute("INSERT INTO entities (entity_id, last_modified) VALUES ('@x@1', 0)")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            failing_transaction()
        assert storage.conn.execute("SELECT COUNT(*) FROM entities").fetchone()[0] == 0
        with storage.write() as conn:
            conn.execute("INSERT INTO entities (entity_id, last_modified) VALUES ('@x@1', 0)")
        assert storage.commits == 1
    finally:
        storage.close()


def test_sidecar_start_stop_and_address(tmp_path: pathlib.Path) -> None:
    hub = SqliteSidecar(tmp_path / "new" / "hub.db")
    hub.start()
    try:
        assert hub.port > 0 and hub.address == f"127.0.0.1:{hub.port}"
        assert (tmp_path / "new" / "hub.db").exists()
    finally:
        hub.stop(grace=1.0)


def test_start_fails_cleanly_when_the_port_is_taken(tmp_path: pathlib.Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        hub = SqliteSidecar(tmp_path / "hub.db", port=taken.getsockname()[1])
        with pytest.raises(OSError, match="could not bind"):
            hub.start()
        assert hub.storage._conn is None


def test_a_failed_commit_is_rolled_back_and_the_next_write_works(tmp_path: pathlib.Path) -> None:
    """A COMMIT can fail and leave SQLite's transaction open (a deferred constraint here;
    SQLITE_FULL from a full disk likewise): it must be rolled back, not left dangling."""
    storage = Storage(tmp_path / "hub.db")
    storage.open()
    try:
        conn = storage.conn
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TEMP TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
        )

        def dangling_reference() -> None:
            with storage.write() as tx:
                tx.execute("INSERT INTO entities (entity_id, last_modified) VALUES ('@x@1', 0)")
                tx.execute("INSERT INTO temp.child VALUES (42)")  # fails only at COMMIT

        with pytest.raises(sqlite3.IntegrityError):
            dangling_reference()
        assert not conn.in_transaction
        assert conn.execute("SELECT COUNT(*) FROM entities").fetchone()[0] == 0
        with storage.write() as tx:
            tx.execute("INSERT INTO entities (entity_id, last_modified) VALUES ('@x@2', 0)")
        assert [r[0] for r in conn.execute("SELECT entity_id FROM entities")] == ["@x@2"]
    finally:
        storage.close()


def test_migrate_reports_the_steps_it_applied(tmp_path: pathlib.Path) -> None:
    conn = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    try:
        assert migrations.migrate(conn) == migrations.SCHEMA_VERSION
        assert migrations.current_version(conn) == migrations.SCHEMA_VERSION
        assert migrations.migrate(conn) == 0
    finally:
        conn.close()


def test_integrity_check_lists_every_problem(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "hub.db"
    storage = Storage(path)
    storage.open()
    try:
        assert storage.integrity_check() == "ok"
        with storage.write() as tx:
            tx.execute("CREATE TABLE notes (body TEXT)")
            tx.execute("CREATE INDEX notes_body ON notes (body)")
            tx.executemany("INSERT INTO notes VALUES (?)", [("a",), ("b",), ("c",)])
    finally:
        storage.close()
    # Redefine the index behind SQLite's back: its stored entries no longer match.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "UPDATE sqlite_master SET sql = 'CREATE INDEX notes_body ON notes (body DESC)'"
        " WHERE name = 'notes_body'"
    )
    conn.close()
    reopened = Storage(path)
    reopened.open()
    try:
        problems = reopened.integrity_check().split("; ")
        assert len(problems) >= 2
        assert all(re.fullmatch(r"row \d+ missing from index notes_body", problem) for problem in problems)
    finally:
        reopened.close()


def test_the_transaction_audit_counts_each_commit_and_each_implicit_write() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    audit = TransactionAudit()
    audit.attach(conn)
    try:
        conn.execute("CREATE TABLE t (x INTEGER)")  # schema, not a write the hub would make
        assert audit.commits == 0
        for value in (1, 2):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?)", (value,))
            conn.execute("COMMIT")
        assert audit.commits == 2
        conn.execute("BEGIN")
        conn.execute("UPDATE t SET x = x + 1")
        conn.execute("END")  # COMMIT's other name
        assert audit.commits == 3
        assert audit.implicit_writes == []
        stray = "  delete FROM t WHERE x = 2" + " AND x = x" * 30  # a long statement
        conn.execute(stray)  # outside a transaction: commits on its own
        assert audit.commits == 4
        assert audit.implicit_writes == [stray[:200]]  # recorded, cut to 200 characters
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (9)")
        conn.execute("ROLLBACK")
        assert audit.commits == 4
    finally:
        conn.close()
