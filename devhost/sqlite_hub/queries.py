"""Read-side RPCs: QueryInstances, ListInstanceIds, QueryEntities, purge-by-filter selection.

Why this module exists: these scans have filters and paging that are easy to get subtly
wrong. Paging uses keyset continuation tokens (``<sort key>|<id>``) rather than the
reference's list offsets, so a page boundary stays correct while instances are being
created or purged concurrently (Azure Durable Task Scheduler tokens are likewise
opaque cursors); clients treat tokens as opaque, so the difference is not observable
except that pages no longer skip or repeat items under concurrent change.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb

from devhost.sqlite_hub import entities, instances
from devhost.sqlite_hub import events as ev

DEFAULT_LIST_PAGE = 100
_TERMINAL = sorted(ev.TERMINAL_STATUSES)


def _token(key: float, ident: str) -> str:
    return f"{key!r}|{ident}"


def _parse_token(token: str) -> tuple[float, str] | None:
    key, sep, ident = token.partition("|")
    if not sep:
        return None
    try:
        return float(key), ident
    except ValueError:
        return None


def _in(column: str, values: list[int], where: list[str], args: list[Any]) -> None:
    if values:
        where.append(f"{column} IN ({','.join('?' * len(values))})")
        args.extend(values)


def query_instances(conn: sqlite3.Connection, query: Any) -> Any:
    where: list[str] = []
    args: list[Any] = []
    _in("status", list(query.runtimeStatus), where, args)
    if query.HasField("createdTimeFrom"):
        where.append("created_at >= ?")
        args.append(ev.ts_seconds(query.createdTimeFrom))
    if query.HasField("createdTimeTo"):
        where.append("created_at < ?")
        args.append(ev.ts_seconds(query.createdTimeTo))
    if query.HasField("instanceIdPrefix") and query.instanceIdPrefix.value:
        where.append("substr(instance_id, 1, ?) = ?")
        args.extend([len(query.instanceIdPrefix.value), query.instanceIdPrefix.value])
    if query.HasField("continuationToken") and query.continuationToken.value:
        cursor = _parse_token(query.continuationToken.value)
        if cursor is not None:
            where.append("(created_at > ? OR (created_at = ? AND instance_id > ?))")
            args.extend([cursor[0], cursor[0], cursor[1]])
    sql = "SELECT * FROM instances"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at, instance_id"
    page_size = query.maxInstanceCount if query.maxInstanceCount > 0 else 0
    if page_size:
        sql += f" LIMIT {page_size + 1}"
    rows = conn.execute(sql, args).fetchall()
    more = bool(page_size) and len(rows) > page_size
    rows = rows[:page_size] if page_size else rows
    states = [instances.state_message(r, query.fetchInputsAndOutputs) for r in rows]
    token = (
        ev.string_value(_token(rows[-1]["created_at"], rows[-1]["instance_id"])) if more and rows else None
    )
    return pb.QueryInstancesResponse(orchestrationState=states, continuationToken=token)


def list_instance_ids(conn: sqlite3.Connection, request: Any) -> Any:
    where = [f"status IN ({','.join('?' * len(_TERMINAL))})", "completed_at IS NOT NULL"]
    args: list[Any] = list(_TERMINAL)
    _in("status", list(request.runtimeStatus), where, args)
    if request.HasField("completedTimeFrom"):
        where.append("completed_at >= ?")
        args.append(ev.ts_seconds(request.completedTimeFrom))
    if request.HasField("completedTimeTo"):
        where.append("completed_at < ?")
        args.append(ev.ts_seconds(request.completedTimeTo))
    if request.HasField("lastInstanceKey") and request.lastInstanceKey.value:
        cursor = _parse_token(request.lastInstanceKey.value)
        if cursor is not None:
            where.append("(completed_at > ? OR (completed_at = ? AND instance_id > ?))")
            args.extend([cursor[0], cursor[0], cursor[1]])
    page_size = request.pageSize if request.pageSize > 0 else DEFAULT_LIST_PAGE
    rows = conn.execute(
        f"SELECT instance_id, completed_at FROM instances WHERE {' AND '.join(where)}"  # noqa: S608
        f" ORDER BY completed_at, instance_id LIMIT {page_size + 1}",
        args,
    ).fetchall()
    more = len(rows) > page_size
    rows = rows[:page_size]
    token = (
        ev.string_value(_token(rows[-1]["completed_at"], rows[-1]["instance_id"])) if more and rows else None
    )
    return pb.ListInstanceIdsResponse(instanceIds=[r["instance_id"] for r in rows], lastInstanceKey=token)


def purge_candidates(conn: sqlite3.Connection, purge_filter: Any) -> list[str]:
    where = [f"status IN ({','.join('?' * len(_TERMINAL))})"]
    args: list[Any] = list(_TERMINAL)
    _in("status", list(purge_filter.runtimeStatus), where, args)
    if purge_filter.HasField("createdTimeFrom"):
        where.append("created_at >= ?")
        args.append(ev.ts_seconds(purge_filter.createdTimeFrom))
    if purge_filter.HasField("createdTimeTo"):
        where.append("created_at < ?")
        args.append(ev.ts_seconds(purge_filter.createdTimeTo))
    rows = conn.execute(
        f"SELECT instance_id FROM instances WHERE {' AND '.join(where)} ORDER BY created_at",  # noqa: S608
        args,
    ).fetchall()
    return [str(r[0]) for r in rows]


def query_entities(conn: sqlite3.Connection, query: Any) -> Any:
    where: list[str] = []
    args: list[Any] = []
    if query.HasField("instanceIdStartsWith") and query.instanceIdStartsWith.value:
        where.append("substr(entity_id, 1, ?) = ?")
        args.extend([len(query.instanceIdStartsWith.value), query.instanceIdStartsWith.value])
    if query.HasField("lastModifiedFrom"):
        where.append("last_modified >= ?")
        args.append(ev.ts_seconds(query.lastModifiedFrom))
    if query.HasField("lastModifiedTo"):
        where.append("last_modified < ?")
        args.append(ev.ts_seconds(query.lastModifiedTo))
    if not query.includeTransient:
        where.append("NOT EXISTS (SELECT 1 FROM entity_inbox q WHERE q.entity_id = entities.entity_id)")
    if query.HasField("continuationToken") and query.continuationToken.value:
        where.append("entity_id > ?")
        args.append(query.continuationToken.value)
    sql = "SELECT * FROM entities"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY entity_id"
    page_size = query.pageSize.value if query.HasField("pageSize") and query.pageSize.value > 0 else 0
    if page_size:
        sql += f" LIMIT {page_size + 1}"
    rows = conn.execute(sql, args).fetchall()
    more = bool(page_size) and len(rows) > page_size
    rows = rows[:page_size] if page_size else rows
    found = [entities.metadata(conn, r, query.includeState) for r in rows]
    token = ev.string_value(rows[-1]["entity_id"]) if more and rows else None
    return pb.QueryEntitiesResponse(entities=found, continuationToken=token)
