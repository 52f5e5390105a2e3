"""Read-only scans of a SQLite task hub file: every stored value, and where a needle occurs.

Integration tests use it to check the storage promises from outside: no stored value is
larger than the payload cap, and after a thread is deleted no row holds its id or text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path


def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def stored_values(db: Path) -> Iterator[tuple[str, str, bytes]]:
    """(table, column, value) for every non-null text or blob value of every table."""
    connection = _connect(db)
    try:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = connection.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names come from sqlite_master
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, str):
                        yield table, column, value.encode("utf-8", errors="surrogatepass")
                    elif isinstance(value, bytes):
                        yield table, column, value
    finally:
        connection.close()


def rows_holding(db: Path, needle: str) -> list[tuple[str, str]]:
    """(table, column) of every value that contains `needle` (as UTF-8 bytes)."""
    encoded = needle.encode("utf-8")
    return [(table, column) for table, column, value in stored_values(db) if encoded in value]


def largest_values(db: Path, count: int = 5) -> list[tuple[int, str, str]]:
    sizes = sorted(((len(v), t, c) for t, c, v in stored_values(db)), reverse=True)
    return sizes[:count]


def entity_ids(db: Path) -> list[str]:
    """Ids of the entities the task hub holds."""
    connection = _connect(db)
    try:
        return [row[0] for row in connection.execute("SELECT entity_id FROM entities")]
    finally:
        connection.close()
