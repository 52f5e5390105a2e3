"""Choosing and handing out work items (orchestration steps, activities, entity batches).

Why this module exists: ``GetWorkItems`` streams repeatedly ask "what is the next thing
this worker may do?". The answer is read from the database and recorded as an in-memory
lease (see ``leases.py``), so handing out work costs no SQLite commit; the commit happens
once, when the work is completed. FIFO within each kind (orchestration steps, activities,
entity batches); work-item filters by name (and version) when the worker declares them.

Between kinds, each stream takes turns: after handing out one kind it looks first at the
next one. The reference backend always prefers orchestrations, then activities; with a
backlog of activities that finish quickly (a thousand turns waiting on an instant model
after a restart) that starves entity work, and in this app an entity write is what makes
a reply visible, so no reply would show until every activity had run.

Entity protocol: the reference always sends ``entityRequestV2`` (``EntityRequest``
carrying history events). The protocol has no capability flag for it, so the rule here
is: a worker that declares ``maxConcurrentEntityWorkItems`` in its ``GetWorkItems``
request (the older, batch-request workers did) gets the V1 ``EntityBatchRequest``; all
others, including the Python SDK worker, get V2 like the reference.

Flow control: unlike the reference (which streams everything it has), no more than the
worker's declared ``maxConcurrent*WorkItems`` of each kind are outstanding on one stream,
as with Azure Durable Task Scheduler. Work then spreads across workers, and items do not
sit in a worker's local queue while their leases run out.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from durabletask.entities.entity_instance_id import EntityInstanceId
from durabletask.internal import orchestrator_service_pb2 as pb

from devhost.sqlite_hub import entities
from devhost.sqlite_hub import events as ev
from devhost.sqlite_hub.leases import LeaseKind, LeaseTable

FilterMap = dict[str, frozenset[str]]

_SCAN = 64
_TERMINAL_SQL = ",".join(str(s) for s in sorted(ev.TERMINAL_STATUSES))


@dataclass
class StreamInfo:
    stream_id: int
    orchestrations: FilterMap | None = None
    activities: FilterMap | None = None
    entities: FilterMap | None = None
    entity_v1: bool = False
    # Most work items of each kind outstanding on this stream at once (0: no limit).
    max_orchestrations: int = 0
    max_activities: int = 0
    max_entities: int = 0
    # Which kind this stream looks at first next time (an index into _KINDS).
    next_kind: int = 0


def stream_info(stream_id: int, request: Any) -> StreamInfo:
    info = StreamInfo(
        stream_id=stream_id,
        entity_v1=request.maxConcurrentEntityWorkItems > 0,
        max_orchestrations=request.maxConcurrentOrchestrationWorkItems,
        max_activities=request.maxConcurrentActivityWorkItems,
        max_entities=request.maxConcurrentEntityWorkItems,
    )
    if request.HasField("workItemFilters"):
        wf = request.workItemFilters

        def build(filters: Any) -> FilterMap:
            result: FilterMap = {}
            for f in filters:
                result[f.name] = result.get(f.name, frozenset()) | frozenset(f.versions)
            return result

        info.orchestrations = build(wf.orchestrations)
        info.activities = build(wf.activities)
        info.entities = {f.name: frozenset() for f in wf.entities}
    return info


def matches(name: str, version: str | None, filt: FilterMap | None) -> bool:
    if filt is None:
        return True
    versions = filt.get(name)
    if versions is None:
        return False
    return not versions or (version or "") in versions


def _names(filt: FilterMap | None) -> str | None:
    """The filter's names as a JSON array for SQL (None: no filter), so a filtered stream
    is not starved by a long queue of work it may not take."""
    return None if filt is None else json.dumps(sorted(filt))


def _entity_name(entity_id: str) -> str:
    try:
        return str(EntityInstanceId.parse(entity_id).entity)
    except ValueError:
        return entity_id


def take(conn: sqlite3.Connection, leases: LeaseTable, stream: StreamInfo, now: float) -> Any:
    """The next work item for this stream (leased to it), or None. Kinds take turns."""
    leases.expire(now)
    limits = {
        "orchestration": stream.max_orchestrations,
        "activity": stream.max_activities,
        "entity": stream.max_entities,
    }
    for offset in range(len(_KINDS)):
        index = (stream.next_kind + offset) % len(_KINDS)
        kind, find = _KINDS[index]
        if not _room(leases, stream, kind, limits[kind]):
            continue
        item = find(conn, leases, stream, now)
        if item is not None:
            stream.next_kind = (index + 1) % len(_KINDS)
            return item
    return None


def _room(leases: LeaseTable, stream: StreamInfo, kind: LeaseKind, limit: int) -> bool:
    return limit <= 0 or leases.count(stream.stream_id, kind) < limit


def _orchestration(conn: sqlite3.Connection, leases: LeaseTable, stream: StreamInfo, now: float) -> Any:
    leased = json.dumps(leases.keys("orchestration"))
    candidates = conn.execute(
        "SELECT i.instance_id, i.name, i.version, i.execution_id, MIN(b.id) AS first"  # noqa: S608 (constants)
        " FROM inbox b JOIN instances i ON i.instance_id = b.instance_id"
        f" WHERE b.visible_at <= ?1 AND i.status NOT IN ({_TERMINAL_SQL})"
        "  AND (i.status != ?2 OR b.wakes = 1)"
        "  AND i.instance_id NOT IN (SELECT value FROM json_each(?3))"
        "  AND NOT EXISTS (SELECT 1 FROM inbox s WHERE s.instance_id = i.instance_id"
        "                  AND s.kind = 'executionStarted' AND s.visible_at > ?1)"
        "  AND (?5 IS NULL OR i.name IN (SELECT value FROM json_each(?5)))"
        " GROUP BY i.instance_id ORDER BY first LIMIT ?4",
        (now, ev.SUSPENDED, leased, _SCAN, _names(stream.orchestrations)),
    ).fetchall()
    for cand in candidates:
        if not matches(cand["name"], cand["version"], stream.orchestrations):
            continue
        instance_id = cand["instance_id"]
        rows = conn.execute(
            "SELECT id, kind, event FROM inbox WHERE instance_id = ? AND visible_at <= ? ORDER BY id",
            (instance_id, now),
        ).fetchall()
        history = [
            ev.decode_event(r["event"])
            for r in conn.execute(
                "SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,)
            )
        ]
        new_events = [ev.decode_event(r["event"]) for r in rows]
        lease = leases.grant("orchestration", instance_id, stream.stream_id, now)
        lease.row_ids = [int(r["id"]) for r in rows]
        lease.execution_id = cand["execution_id"]
        # A re-dispatch starts with orchestratorStarted so ctx.current_utc_datetime
        # advances, unless the batch already begins with one (as the reference does).
        if history and not (rows and rows[0]["kind"] == "orchestratorStarted"):
            prefix = ev.orchestrator_started(now)
            lease.prefix = ev.encode(prefix)
            new_events.insert(0, prefix)
        return pb.WorkItem(
            completionToken=lease.token,
            orchestratorRequest=pb.OrchestratorRequest(
                instanceId=instance_id,
                executionId=ev.string_value(cand["execution_id"]),
                pastEvents=history,
                newEvents=new_events,
            ),
        )
    return None


def _activity(conn: sqlite3.Connection, leases: LeaseTable, stream: StreamInfo, now: float) -> Any:
    leased = json.dumps([int(k) for k in leases.keys("activity")])
    rows = conn.execute(
        "SELECT id, name, version, execution_id, request FROM activities"
        " WHERE id NOT IN (SELECT value FROM json_each(?1))"
        "  AND (?3 IS NULL OR name IN (SELECT value FROM json_each(?3)))"
        " ORDER BY id LIMIT ?2",
        (leased, _SCAN, _names(stream.activities)),
    ).fetchall()
    for row in rows:
        if not matches(row["name"], row["version"], stream.activities):
            continue
        request = pb.ActivityRequest()
        request.ParseFromString(row["request"])
        lease = leases.grant("activity", str(row["id"]), stream.stream_id, now)
        lease.execution_id = row["execution_id"]
        return pb.WorkItem(completionToken=lease.token, activityRequest=request)
    return None


def _entity(conn: sqlite3.Connection, leases: LeaseTable, stream: StreamInfo, now: float) -> Any:
    leased = json.dumps(leases.keys("entity"))
    # While an entity is locked, only its lock owner's calls may run (see entities.py).
    ready = "q.visible_at <= ?1 AND (e.locked_by IS NULL OR q.parent_instance_id = e.lock_owner)"
    candidates = conn.execute(
        "SELECT q.entity_id, MIN(q.id) AS first"  # noqa: S608 (constants)
        " FROM entity_inbox q JOIN entities e ON e.entity_id = q.entity_id"
        f" WHERE {ready} AND q.entity_id NOT IN (SELECT value FROM json_each(?2))"
        " GROUP BY q.entity_id ORDER BY first LIMIT ?3",
        (now, leased, _SCAN),
    ).fetchall()
    for cand in candidates:
        entity_id = cand["entity_id"]
        if stream.entities is not None and not matches(_entity_name(entity_id), None, stream.entities):
            continue
        rows = conn.execute(
            "SELECT q.id, q.event FROM entity_inbox q JOIN entities e ON e.entity_id = q.entity_id"  # noqa: S608
            f" WHERE q.entity_id = ?2 AND {ready} ORDER BY q.id",
            (now, entity_id),
        ).fetchall()
        entity = entities.get(conn, entity_id)
        state = entity["state"] if entity is not None else None
        lease = leases.grant("entity", entity_id, stream.stream_id, now)
        lease.row_ids = [int(r["id"]) for r in rows]
        ops = [ev.decode_event(r["event"]) for r in rows]
        if stream.entity_v1:
            return pb.WorkItem(
                completionToken=lease.token,
                entityRequest=pb.EntityBatchRequest(
                    instanceId=entity_id,
                    entityState=ev.string_value(state) if state else None,
                    operations=[entities.operation_request(op) for op in ops],
                ),
            )
        return pb.WorkItem(
            completionToken=lease.token,
            entityRequestV2=pb.EntityRequest(
                instanceId=entity_id,
                entityState=ev.string_value(state) if state else None,
                operationRequests=ops,
            ),
        )
    return None


_KINDS: tuple[tuple[LeaseKind, Callable[[sqlite3.Connection, LeaseTable, StreamInfo, float], Any]], ...] = (
    ("orchestration", _orchestration),
    ("activity", _activity),
    ("entity", _entity),
)
