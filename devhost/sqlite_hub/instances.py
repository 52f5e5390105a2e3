"""Orchestration instances: creation, messages to them, terminate/suspend/resume, purge.

Why this module exists: these are the transitions that act on an instance from the
outside (client RPCs, other orchestrations, entities), as opposed to applying a step
returned by a worker (``steps.py``). All functions run inside a ``Tx``.

Messages are rows in ``inbox``; a message to an instance that does not exist or has
reached a terminal state is dropped, like the reference backend (which never
dispatches them). An event raised to a *suspended* instance is stored but does not by
itself make the instance dispatchable (``wakes = 0``); it is delivered with the next
batch after the instance is resumed, like the reference.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from durabletask.internal import helpers
from durabletask.internal import orchestrator_service_pb2 as pb

from devhost.sqlite_hub import events as ev
from devhost.sqlite_hub.tx import Tx, log


class InstanceExists(Exception):
    """An instance with this id exists and may not be replaced."""


def get(conn: sqlite3.Connection, instance_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM instances WHERE instance_id = ?", (instance_id,)
    ).fetchone()
    return row


def touch(tx: Tx, instance_id: str) -> None:
    tx.conn.execute("UPDATE instances SET last_updated_at = ? WHERE instance_id = ?", (tx.now, instance_id))


def enqueue(
    tx: Tx, instance_id: str, event: Any, *, visible_at: float | None = None, wakes: bool = True
) -> None:
    tx.conn.execute(
        "INSERT INTO inbox (instance_id, kind, event, visible_at, wakes) VALUES (?, ?, ?, ?, ?)",
        (
            instance_id,
            ev.kind(event),
            ev.encode(event),
            tx.now if visible_at is None else visible_at,
            int(wakes),
        ),
    )


def deliver(tx: Tx, instance_id: str, event: Any, *, execution_id: str | None = None) -> bool:
    """Sends a message to a live instance; returns False (and drops it) otherwise.

    With ``execution_id`` the message is only for that execution: replies to work
    started by an execution that has since continued-as-new are dropped, like Azure
    Durable Task Scheduler (the reference would hand them to the new execution).
    """
    row = get(tx.conn, instance_id)
    if row is None or ev.is_terminal(row["status"]):
        return False
    if execution_id is not None and row["execution_id"] != execution_id:
        log.info("dropping %s for '%s': execution %s is gone", ev.kind(event), instance_id, execution_id)
        return False
    wakes = not (row["status"] == ev.SUSPENDED and ev.kind(event) == "eventRaised")
    enqueue(tx, instance_id, ev.stamped(event, tx.now), wakes=wakes)
    touch(tx, instance_id)
    return True


def delete(tx: Tx, instance_id: str) -> None:
    """Removes an instance and everything queued for it, voiding any lease on it."""
    conn = tx.conn
    conn.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
    conn.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))
    conn.execute("DELETE FROM inbox WHERE instance_id = ?", (instance_id,))
    tx.leases.drop_key("orchestration", instance_id)


def create(
    tx: Tx,
    instance_id: str,
    name: str,
    encoded_input: str | None,
    *,
    version: str | None = None,
    tags: dict[str, str] | None = None,
    start_at: float | None = None,
    parent: tuple[str, str, int] | None = None,
    parent_trace_context: Any = None,
    replaceable: frozenset[int] | None = None,
) -> str:
    """Creates a PENDING instance with its start events queued.

    ``replaceable`` is the set of statuses of an existing instance with the same id that
    may be replaced; ``None`` means "terminal statuses" (the reference's rule for
    sub-orchestrations, restarts and entity-started orchestrations).
    """
    existing = get(tx.conn, instance_id)
    if existing is not None:
        allowed = ev.TERMINAL_STATUSES if replaceable is None else replaceable
        if existing["status"] not in allowed:
            raise InstanceExists(f"Orchestration instance '{instance_id}' already exists")
        delete(tx, instance_id)
    execution_id = uuid.uuid4().hex
    start = tx.now if start_at is None else start_at
    tx.conn.execute(
        "INSERT INTO instances (instance_id, execution_id, name, version, status, input, tags, created_at,"
        " last_updated_at, parent_instance_id, parent_execution_id, parent_task_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            instance_id,
            execution_id,
            name,
            version,
            ev.PENDING,
            encoded_input,
            json.dumps(tags) if tags else None,
            tx.now,
            tx.now,
            parent[0] if parent else None,
            parent[1] if parent else None,
            parent[2] if parent else None,
        ),
    )
    parent_info = None
    if parent is not None:
        parent_info = pb.ParentInstanceInfo(
            taskScheduledId=parent[2],
            orchestrationInstance=pb.OrchestrationInstance(
                instanceId=parent[0], executionId=ev.string_value(parent[1])
            ),
        )
    enqueue(tx, instance_id, ev.orchestrator_started(start), visible_at=start)
    started = ev.execution_started(
        name,
        instance_id,
        encoded_input,
        version=version,
        tags=tags,
        execution_id=execution_id,
        parent=parent_info,
        parent_trace_context=parent_trace_context,
    )
    enqueue(tx, instance_id, started, visible_at=start)
    return execution_id


def children(conn: sqlite3.Connection, instance_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT instance_id FROM instances WHERE parent_instance_id = ? ORDER BY created_at", (instance_id,)
    ).fetchall()
    return [str(r[0]) for r in rows]


def terminate(tx: Tx, instance_id: str, output: str | None, *, recursive: bool) -> None:
    """Queues termination of a live instance (and, if asked, of its live sub-orchestrations).

    Recursive termination follows Azure Durable Task Scheduler; the reference backend
    logs that it does not support it and terminates only the named instance.
    """
    row = get(tx.conn, instance_id)
    if row is None:
        return
    if recursive:
        for child in children(tx.conn, instance_id):
            terminate(tx, child, output, recursive=True)
    if ev.is_terminal(row["status"]):
        return
    # An instance whose scheduled start is still in the future is terminated now.
    tx.conn.execute(
        "UPDATE inbox SET visible_at = MIN(visible_at, ?) WHERE instance_id = ?"
        " AND kind IN ('orchestratorStarted', 'executionStarted')",
        (tx.now, instance_id),
    )
    enqueue(tx, instance_id, ev.stamped(helpers.new_terminated_event(encoded_output=output), tx.now))
    touch(tx, instance_id)


def suspend(tx: Tx, row: sqlite3.Row, reason: str | None) -> None:
    if row["status"] == ev.SUSPENDED or ev.is_terminal(row["status"]):
        return
    enqueue(tx, row["instance_id"], ev.stamped(helpers.new_suspend_event(encoded_input=reason), tx.now))
    touch(tx, row["instance_id"])


def resume(tx: Tx, row: sqlite3.Row, reason: str | None) -> None:
    if ev.is_terminal(row["status"]):
        return
    enqueue(tx, row["instance_id"], ev.stamped(helpers.new_resume_event(encoded_input=reason), tx.now))
    touch(tx, row["instance_id"])


def purge(tx: Tx, instance_id: str, *, recursive: bool) -> int:
    """Deletes a terminal instance (and, if asked, its sub-orchestrations); returns the count.

    Recursive purge follows Azure Durable Task Scheduler; the reference ignores the flag.
    """
    row = get(tx.conn, instance_id)
    if row is None or not ev.is_terminal(row["status"]):
        return 0
    count = 0
    if recursive:
        for child in children(tx.conn, instance_id):
            count += purge(tx, child, recursive=True)
    delete(tx, instance_id)
    return count + 1


def state_message(row: sqlite3.Row, include_payloads: bool) -> Any:
    """The ``OrchestrationState`` for an instance row, shaped like the reference's."""
    failure = ev.decode_failure(row["failure"])
    return pb.OrchestrationState(
        instanceId=row["instance_id"],
        name=row["name"],
        version=ev.string_value(row["version"]),
        orchestrationStatus=row["status"],
        createdTimestamp=ev.new_ts(row["created_at"]),
        lastUpdatedTimestamp=ev.new_ts(row["last_updated_at"]),
        completedTimestamp=ev.new_ts(row["completed_at"]) if row["completed_at"] is not None else None,
        input=ev.string_value(row["input"]) if include_payloads and row["input"] else None,
        output=ev.string_value(row["output"]) if include_payloads and row["output"] else None,
        customStatus=ev.string_value(row["custom_status"]) if row["custom_status"] else None,
        failureDetails=failure,
        executionId=ev.string_value(row["execution_id"]),
        tags=json.loads(row["tags"]) if row["tags"] else None,
        parentInstanceId=ev.string_value(row["parent_instance_id"]),
    )
