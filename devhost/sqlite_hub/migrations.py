"""Numbered schema migrations for the SQLite task hub.

Why this module exists: the hub file outlives any one version of devhost, so the schema
is versioned with ``PRAGMA user_version`` and upgraded step by step, each step inside
one transaction, the first time a newer sidecar opens an older file.

Design notes on the tables:

* ``instances``: one row per orchestration instance (its current execution).
* ``history``: the committed history of the current execution, in order.
* ``inbox``: messages for orchestrations that are not yet in history (new events,
  activity results, timers whose ``visible_at`` is in the future, events raised while
  a step is in flight). A step takes the visible rows and moves them to ``history``
  in the same transaction that applies the step's actions.
* ``activities``: activity work that has been scheduled and not yet completed.
* ``entities`` / ``entity_inbox``: entity state and its pending operations
  (delayed signals have a future ``visible_at``).
* ``lock_requests``: critical-section lock requests waiting for their entities.

Leases are deliberately *not* stored: a lease only means something to a connected
worker of this process, so after a restart every lease is void and all unfinished
work is handed out again.
"""

from __future__ import annotations

import sqlite3

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: initial schema
    (
        """CREATE TABLE instances (
            instance_id TEXT PRIMARY KEY,
            execution_id TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT,
            status INTEGER NOT NULL,
            input TEXT,
            output TEXT,
            custom_status TEXT,
            failure BLOB,
            tags TEXT,
            created_at REAL NOT NULL,
            last_updated_at REAL NOT NULL,
            completed_at REAL,
            parent_instance_id TEXT,
            parent_execution_id TEXT,
            parent_task_id INTEGER
        )""",
        "CREATE INDEX ix_instances_parent ON instances(parent_instance_id)",
        "CREATE INDEX ix_instances_created ON instances(created_at, instance_id)",
        "CREATE INDEX ix_instances_completed ON instances(completed_at, instance_id)",
        """CREATE TABLE history (
            instance_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            event BLOB NOT NULL,
            PRIMARY KEY (instance_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE inbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            instance_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            event BLOB NOT NULL,
            visible_at REAL NOT NULL,
            wakes INTEGER NOT NULL DEFAULT 1
        )""",
        "CREATE INDEX ix_inbox_instance ON inbox(instance_id, id)",
        "CREATE INDEX ix_inbox_visible ON inbox(visible_at)",
        """CREATE TABLE activities (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            instance_id TEXT NOT NULL,
            execution_id TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT,
            request BLOB NOT NULL
        )""",
        "CREATE INDEX ix_activities_instance ON activities(instance_id)",
        """CREATE TABLE entities (
            entity_id TEXT PRIMARY KEY,
            state TEXT,
            last_modified REAL NOT NULL,
            locked_by TEXT,
            lock_owner TEXT
        )""",
        """CREATE TABLE entity_inbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            entity_id TEXT NOT NULL,
            event BLOB NOT NULL,
            parent_instance_id TEXT,
            visible_at REAL NOT NULL
        )""",
        "CREATE INDEX ix_entity_inbox_entity ON entity_inbox(entity_id, id)",
        "CREATE INDEX ix_entity_inbox_visible ON entity_inbox(visible_at)",
        """CREATE TABLE lock_requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            critical_section_id TEXT NOT NULL,
            owner_instance_id TEXT NOT NULL,
            lock_set TEXT NOT NULL
        )""",
    ),
    # 2: deleted entities do not exist (see entities.py); drop the empty rows older hubs kept
    (
        "DELETE FROM entities WHERE state IS NULL AND locked_by IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM entity_inbox q WHERE q.entity_id = entities.entity_id)",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)


def current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Brings the database up to ``SCHEMA_VERSION``; returns the number of steps applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``): each step runs in its
    own ``BEGIN IMMEDIATE`` transaction together with its ``user_version`` bump.
    """
    applied = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(conn)
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"task hub schema version {version} is newer than this sidecar ({SCHEMA_VERSION})"
                )
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return applied
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
            applied += 1
        except BaseException:
            conn.execute("ROLLBACK")
            raise
