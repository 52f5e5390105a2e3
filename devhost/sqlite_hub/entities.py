"""Durable entities: operation queues, critical-section locks and batch results.

Why this module exists: entity operations arrive from clients (``SignalEntity``),
orchestrations (signal/call/lock/unlock actions) and other entities (signals); they
queue in ``entity_inbox`` and are executed in batches by workers. This module holds
those transitions; all functions run inside a ``Tx``.

Locks: a lock request is granted atomically for its whole lock set when none of the
entities is locked (FIFO among waiting requests), as in the reference. Unlike the
reference, and like Azure Durable Task Scheduler, while an entity is locked only the
lock owner's operations are dispatched to it (other callers' operations wait until the
lock is released), locks held by an orchestration are released when it reaches a
terminal state, and ``CleanEntityStorage`` treats a lock as orphaned when its owner no
longer exists or is terminal (the reference compares the critical-section id with
instance ids, so it considers every lock orphaned).

Deleted entities do not exist: an ``entities`` row is kept only while the entity has
state, queued operations or a lock. When a transition leaves it with none of those (an
operation deleted the state, a lock on a never-used entity was released) the row is
removed in the same transaction, so ``GetEntity`` answers not-found, queries do not list
it and a later signal recreates it from empty. Azure Durable Task Scheduler (and the
Netherite and MSSQL backends) delete entities implicitly like this; the reference keeps
an empty entity until ``CleanEntityStorage`` removes it.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb

from devhost.sqlite_hub import events as ev
from devhost.sqlite_hub import instances
from devhost.sqlite_hub.tx import Tx, log


def ensure(tx: Tx, entity_id: str) -> None:
    tx.conn.execute(
        "INSERT OR IGNORE INTO entities (entity_id, last_modified) VALUES (?, ?)",
        (entity_id, tx.now),
    )


# An entity row is "empty" (and is removed) when it has no state, no lock and nothing queued.
_EMPTY = (
    "state IS NULL AND locked_by IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM entity_inbox q WHERE q.entity_id = entities.entity_id)"
)
# CleanEntityStorage looks at this many entities per call and returns a continuation
# token for the rest, so one call never holds the write lock for long.
CLEAN_PAGE = 500


def remove_if_empty(tx: Tx, entity_id: str) -> bool:
    """Deletes the entity's row if it has no state, lock or queued operations."""
    cur = tx.conn.execute(
        f"DELETE FROM entities WHERE entity_id = ? AND {_EMPTY}",  # noqa: S608 (constant)
        (entity_id,),
    )
    return cur.rowcount > 0


def get(conn: sqlite3.Connection, entity_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM entities WHERE entity_id = ?", (entity_id,)
    ).fetchone()
    return row


def queue_operation(tx: Tx, entity_id: str, event: Any, *, visible_at: float | None = None) -> None:
    """Queues a signal or call (an ``entityOperationSignaled/Called`` history event)."""
    ensure(tx, entity_id)
    parent: str | None = None
    if event.HasField("entityOperationCalled"):
        parent = ev.opt_string(event.entityOperationCalled, "parentInstanceId")
    due = tx.now if visible_at is None or visible_at < tx.now else visible_at
    tx.conn.execute(
        "INSERT INTO entity_inbox (entity_id, event, parent_instance_id, visible_at) VALUES (?, ?, ?, ?)",
        (entity_id, ev.encode(event), parent, due),
    )


def signal(
    tx: Tx,
    entity_id: str,
    operation: str,
    encoded_input: str | None,
    *,
    request_id: str | None = None,
    scheduled: float | None = None,
) -> None:
    event = pb.HistoryEvent(
        eventId=-1,
        timestamp=ev.new_ts(tx.now),
        entityOperationSignaled=pb.EntityOperationSignaledEvent(
            requestId=request_id or uuid.uuid4().hex,
            operation=operation,
            input=ev.string_value(encoded_input),
            targetInstanceId=ev.string_value(entity_id),
        ),
    )
    if scheduled is not None:
        event.entityOperationSignaled.scheduledTime.CopyFrom(ev.new_ts(scheduled))
    queue_operation(tx, entity_id, event, visible_at=scheduled)


def request_lock(tx: Tx, critical_section_id: str, owner: str, lock_set: list[str]) -> None:
    tx.conn.execute(
        "INSERT INTO lock_requests (critical_section_id, owner_instance_id, lock_set) VALUES (?, ?, ?)",
        (critical_section_id, owner, json.dumps(lock_set)),
    )
    grant_pending_locks(tx)


def unlock(tx: Tx, entity_id: str, critical_section_id: str) -> None:
    tx.conn.execute(
        "UPDATE entities SET locked_by = NULL, lock_owner = NULL WHERE entity_id = ? AND locked_by = ?",
        (entity_id, critical_section_id),
    )
    grant_pending_locks(tx)
    remove_if_empty(tx, entity_id)


def release_locks_of(tx: Tx, owner: str) -> None:
    """Releases every lock held or requested by an orchestration that has finished."""
    tx.conn.execute("DELETE FROM lock_requests WHERE owner_instance_id = ?", (owner,))
    held = [
        str(r[0])
        for r in tx.conn.execute("SELECT entity_id FROM entities WHERE lock_owner = ?", (owner,)).fetchall()
    ]
    if not held:
        return
    tx.conn.execute("UPDATE entities SET locked_by = NULL, lock_owner = NULL WHERE lock_owner = ?", (owner,))
    grant_pending_locks(tx)
    for entity_id in held:
        remove_if_empty(tx, entity_id)


def grant_pending_locks(tx: Tx) -> None:
    conn = tx.conn
    for req in conn.execute("SELECT * FROM lock_requests ORDER BY id").fetchall():
        owner = instances.get(conn, req["owner_instance_id"])
        if owner is None or ev.is_terminal(owner["status"]):
            conn.execute("DELETE FROM lock_requests WHERE id = ?", (req["id"],))
            continue
        lock_set: list[str] = json.loads(req["lock_set"])
        busy = False
        for entity_id in lock_set:
            row = get(conn, entity_id)
            if row is not None and row["locked_by"] is not None:
                busy = True
                break
        if busy:
            continue
        for entity_id in lock_set:
            ensure(tx, entity_id)
            conn.execute(
                "UPDATE entities SET locked_by = ?, lock_owner = ? WHERE entity_id = ?",
                (req["critical_section_id"], req["owner_instance_id"], entity_id),
            )
        conn.execute("DELETE FROM lock_requests WHERE id = ?", (req["id"],))
        granted = pb.HistoryEvent(
            eventId=-1,
            timestamp=ev.new_ts(tx.now),
            entityLockGranted=pb.EntityLockGrantedEvent(criticalSectionId=req["critical_section_id"]),
        )
        instances.deliver(tx, req["owner_instance_id"], granted)


def operation_request(event: Any) -> Any:
    """The V1 ``OperationRequest`` for a queued signal/call event."""
    op = (
        event.entityOperationSignaled
        if event.HasField("entityOperationSignaled")
        else event.entityOperationCalled
    )
    return pb.OperationRequest(
        operation=op.operation, requestId=op.requestId, input=op.input if op.HasField("input") else None
    )


def apply_batch_result(tx: Tx, entity_id: str, row_ids: list[int], result: Any) -> None:
    """Applies a completed batch: new state, replies to callers, side-effect actions.

    Two cases the reference does not handle, treated as Azure Durable Task Scheduler /
    DurableTask.Core do: a result with fewer results than operations leaves the
    unprocessed operations queued for the next batch; a batch that failed as a whole
    (``failureDetails`` and no results) keeps the entity's state and fails each call
    with those details (the reference would wipe the state and never answer callers).
    """
    conn = tx.conn
    ops: list[Any] = []
    for row_id in row_ids:
        row = conn.execute("SELECT event FROM entity_inbox WHERE id = ?", (row_id,)).fetchone()
        ops.append(ev.decode_event(row["event"]) if row is not None else None)
    if result.HasField("failureDetails") and not result.results:
        log.warning("entity %s batch failed: %s", entity_id, result.failureDetails.errorMessage)
        conn.executemany("DELETE FROM entity_inbox WHERE id = ?", [(i,) for i in row_ids])
        for op in ops:
            if op is not None and op.HasField("entityOperationCalled"):
                called = op.entityOperationCalled
                failed = pb.HistoryEvent(
                    eventId=-1,
                    entityOperationFailed=pb.EntityOperationFailedEvent(
                        requestId=called.requestId, failureDetails=result.failureDetails
                    ),
                )
                parent = ev.opt_string(called, "parentInstanceId")
                if parent:
                    instances.deliver(
                        tx, parent, failed, execution_id=ev.opt_string(called, "parentExecutionId")
                    )
        remove_if_empty(tx, entity_id)
        return
    processed = min(len(ops), len(result.results))
    ops = ops[:processed]
    state = result.entityState.value if result.HasField("entityState") and result.entityState.value else None
    conn.execute(
        "UPDATE entities SET state = ?, last_modified = ? WHERE entity_id = ?",
        (state, tx.now, entity_id),
    )
    conn.executemany("DELETE FROM entity_inbox WHERE id = ?", [(i,) for i in row_ids[:processed]])

    for i, op in enumerate(ops):
        destination: str | None = None
        request_id = ""
        execution_id: str | None = None
        if op is not None and op.HasField("entityOperationCalled"):
            execution_id = ev.opt_string(op.entityOperationCalled, "parentExecutionId") or None
        if i < len(result.operationInfos) and result.operationInfos[i].responseDestination.instanceId:
            info = result.operationInfos[i]
            destination = info.responseDestination.instanceId
            request_id = info.requestId
        elif op is not None and op.HasField("entityOperationCalled"):
            # V1 results carry no operationInfos: the queued call says where to reply.
            destination = ev.opt_string(op.entityOperationCalled, "parentInstanceId")
            request_id = op.entityOperationCalled.requestId
        if not destination or i >= len(result.results):
            continue
        res = result.results[i]
        if res.HasField("success"):
            reply = pb.HistoryEvent(
                eventId=-1,
                entityOperationCompleted=pb.EntityOperationCompletedEvent(
                    requestId=request_id,
                    output=res.success.result if res.success.HasField("result") else None,
                ),
            )
        elif res.HasField("failure"):
            reply = pb.HistoryEvent(
                eventId=-1,
                entityOperationFailed=pb.EntityOperationFailedEvent(
                    requestId=request_id, failureDetails=res.failure.failureDetails
                ),
            )
        else:
            continue
        instances.deliver(tx, destination, reply, execution_id=execution_id)

    for action in result.actions:
        if action.HasField("sendSignal"):
            sig = action.sendSignal
            scheduled = ev.ts_seconds(sig.scheduledTime) if sig.HasField("scheduledTime") else None
            signal(tx, sig.instanceId, sig.name, ev.opt_string(sig, "input"), scheduled=scheduled)
        elif action.HasField("startNewOrchestration"):
            start = action.startNewOrchestration
            try:
                instances.create(
                    tx,
                    start.instanceId or uuid.uuid4().hex,
                    start.name,
                    ev.opt_string(start, "input"),
                    version=ev.opt_string(start, "version"),
                    start_at=ev.ts_seconds(start.scheduledTime) if start.HasField("scheduledTime") else None,
                )
            except instances.InstanceExists as exc:
                log.warning("entity %s could not start orchestration: %s", entity_id, exc)
    # A batch that leaves the entity without state, lock or queued work deletes it.
    remove_if_empty(tx, entity_id)


def metadata(conn: sqlite3.Connection, row: sqlite3.Row, include_state: bool) -> Any:
    backlog = conn.execute(
        "SELECT COUNT(*) FROM entity_inbox WHERE entity_id = ?", (row["entity_id"],)
    ).fetchone()[0]
    return pb.EntityMetadata(
        instanceId=row["entity_id"],
        lastModifiedTime=ev.new_ts(row["last_modified"]),
        backlogQueueSize=int(backlog),
        lockedBy=ev.string_value(row["locked_by"]),
        serializedState=ev.string_value(row["state"]) if include_state and row["state"] else None,
    )


def clean_storage(
    tx: Tx, remove_empty: bool, release_orphaned: bool, after: str | None
) -> tuple[int, int, str | None]:
    """One page of ``CleanEntityStorage``: (empty removed, orphaned locks released, continuation).

    Looks at up to ``CLEAN_PAGE`` entities with ids after ``after``; the continuation is the
    last id looked at, or None when the scan reached the end.
    """
    conn = tx.conn
    rows = conn.execute(
        "SELECT entity_id, locked_by, lock_owner FROM entities WHERE entity_id > ?"
        " ORDER BY entity_id LIMIT ?",
        (after or "", CLEAN_PAGE + 1),
    ).fetchall()
    more = len(rows) > CLEAN_PAGE
    rows = rows[:CLEAN_PAGE]
    freed: list[str] = []
    if release_orphaned:
        for row in rows:
            if row["locked_by"] is None:
                continue
            owner = instances.get(conn, row["lock_owner"]) if row["lock_owner"] else None
            if owner is None or ev.is_terminal(owner["status"]):
                conn.execute(
                    "UPDATE entities SET locked_by = NULL, lock_owner = NULL WHERE entity_id = ?",
                    (row["entity_id"],),
                )
                freed.append(row["entity_id"])
        if freed:
            grant_pending_locks(tx)
    removed = 0
    if remove_empty:
        removed = sum(remove_if_empty(tx, row["entity_id"]) for row in rows)
    else:
        # Deleted entities do not exist: one emptied by releasing its lock goes anyway
        # (not counted, since removing empty entities was not asked for).
        for entity_id in freed:
            remove_if_empty(tx, entity_id)
    token = str(rows[-1]["entity_id"]) if more and rows else None
    return removed, len(freed), token
