"""Applying one orchestration step (``CompleteOrchestratorTask``) in one transaction.

Why this module exists: this is the heart of the hub. A step returned by a worker is
applied exactly once, atomically: the events the step consumed leave the inbox and are
appended to history together with the step's own history events, the instance's status
/ output / custom status change, and the step's actions turn into new activity work,
timers (future inbox rows), sub-orchestrations, events to other instances and entity
messages. If anything fails the whole transaction rolls back and the lease stays, so
the step can be completed again or is handed out again.

The shape of history (orchestratorStarted / new events / action events /
orchestratorCompleted / executionCompleted) follows the reference backend.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any, cast

from durabletask.internal import helpers
from durabletask.internal import orchestrator_service_pb2 as pb

from devhost.sqlite_hub import entities, instances
from devhost.sqlite_hub import events as ev
from devhost.sqlite_hub.leases import Lease
from devhost.sqlite_hub.tx import Tx, log


class HistoryTooLarge(Exception):
    pass


# Inbox messages that belong to one execution and are dropped when it continues as new
# (Azure Durable Task Scheduler does the same; the reference delivers them to the new
# execution, where the SDK ignores them).
_EXECUTION_SCOPED = (
    "timerFired",
    "taskCompleted",
    "taskFailed",
    "subOrchestrationInstanceCompleted",
    "subOrchestrationInstanceFailed",
)


class _Step:
    def __init__(self, tx: Tx, row: Any, lease: Lease) -> None:
        self.tx = tx
        self.conn = tx.conn
        self.instance_id: str = row["instance_id"]
        self.execution_id: str = row["execution_id"]
        self.name: str = row["name"]
        self.version: str | None = row["version"]
        self.status: int = row["status"]
        self.input: str | None = row["input"]
        self.output: str | None = row["output"]
        self.failure: Any = ev.decode_failure(row["failure"])
        self.completed_at: float | None = row["completed_at"]
        self.tags: str | None = row["tags"]
        self.parent: tuple[str | None, str | None, int | None] = (
            row["parent_instance_id"],
            row["parent_execution_id"],
            row["parent_task_id"],
        )
        self.lease = lease
        self.continued = False  # the step continued-as-new: history restarts empty
        self.seq = int(
            self.conn.execute(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM history WHERE instance_id = ?", (self.instance_id,)
            ).fetchone()[0]
        )

    # -- history -------------------------------------------------------------------------

    def append(self, event: Any) -> None:
        self.conn.execute(
            "INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)",
            (self.instance_id, self.seq, ev.encode(event)),
        )
        self.seq += 1

    def clear_history(self) -> None:
        self.conn.execute("DELETE FROM history WHERE instance_id = ?", (self.instance_id,))
        self.seq = 0

    # -- the step ------------------------------------------------------------------------

    def run(self, response: Any) -> None:
        consumed = self._take_inbox()
        if self.seq + len(consumed) > self.tx.max_history:
            raise HistoryTooLarge(f"Orchestration '{self.instance_id}' would exceed maximum history size")
        for event in consumed:
            self.append(event)
        custom_status = response.customStatus.value if response.HasField("customStatus") else None
        if self.status == ev.PENDING:
            self.status = ev.RUNNING
        for event in consumed:
            if event.HasField("executionSuspended"):
                self.status = ev.SUSPENDED
            elif event.HasField("executionResumed"):
                self.status = ev.RUNNING
        try:
            for action in response.actions:
                self._action(action)
        except sqlite3.Error:
            raise  # a storage failure rolls the whole step back; it is retried
        except Exception as exc:  # noqa: BLE001 - like the reference, a bad action fails the orchestration
            log.exception("error applying actions of '%s'", self.instance_id)
            if not ev.is_terminal(self.status):
                self.status = ev.FAILED
                self.failure = pb.TaskFailureDetails(
                    errorType=helpers.get_qualified_name(type(exc)),
                    errorMessage=str(exc),
                    isNonRetriable=True,
                )
                self.completed_at = self.tx.now
        if not (self.continued and self.status == ev.RUNNING):
            self.append(ev.stamped(helpers.new_orchestrator_completed_event(), self.tx.now))
            if ev.is_terminal(self.status):
                self.append(
                    ev.stamped(
                        helpers.new_execution_completed_event(
                            cast(Any, self.status), self.output, self.failure
                        ),
                        self.tx.now,
                    )
                )
                self._finish()
        self.conn.execute(
            "UPDATE instances SET status = ?, output = ?, failure = ?, custom_status = ?, completed_at = ?,"
            " input = ?, version = ?, execution_id = ?, last_updated_at = ? WHERE instance_id = ?",
            (
                self.status,
                self.output,
                ev.encode(self.failure) if self.failure is not None else None,
                custom_status,
                self.completed_at,
                self.input,
                self.version,
                self.execution_id,
                self.tx.now,
                self.instance_id,
            ),
        )

    def _take_inbox(self) -> list[Any]:
        consumed: list[Any] = []
        if self.lease.prefix is not None:
            consumed.append(ev.decode_event(self.lease.prefix))
        for row_id in self.lease.row_ids:
            row = self.conn.execute("SELECT event FROM inbox WHERE id = ?", (row_id,)).fetchone()
            if row is not None:
                consumed.append(ev.decode_event(row["event"]))
        self.conn.executemany("DELETE FROM inbox WHERE id = ?", [(i,) for i in self.lease.row_ids])
        return consumed

    def _finish(self) -> None:
        finish_execution(self.tx, self.instance_id, self.status, self.output, self.failure, self.parent)

    # -- actions -------------------------------------------------------------------------

    def _action(self, action: Any) -> None:
        which = action.WhichOneof("orchestratorActionType")
        if which == "completeOrchestration":
            self._complete(action.completeOrchestration)
        elif which == "scheduleTask":
            self._schedule_task(action)
        elif which == "createTimer":
            fire_at = action.createTimer.fireAt
            created = pb.HistoryEvent(eventId=action.id, timerCreated=pb.TimerCreatedEvent(fireAt=fire_at))
            self.append(ev.stamped(created, self.tx.now))
            fired = pb.HistoryEvent(
                eventId=-1, timerFired=pb.TimerFiredEvent(fireAt=fire_at, timerId=action.id)
            )
            instances.enqueue(
                self.tx,
                self.instance_id,
                ev.stamped(fired, ev.ts_seconds(fire_at)),
                visible_at=ev.ts_seconds(fire_at),
            )
        elif which == "createSubOrchestration":
            self._create_sub_orchestration(action)
        elif which == "sendEvent":
            send = action.sendEvent
            target = send.instance.instanceId if send.HasField("instance") else ""
            data = ev.opt_string(send, "data")
            self.append(
                ev.stamped(helpers.new_event_sent_event(action.id, target, data, name=send.name), self.tx.now)
            )
            if target:
                instances.deliver(self.tx, target, helpers.new_event_raised_event(send.name, data))
        elif which == "sendEntityMessage":
            self._entity_message(action)
        elif which == "terminateOrchestration":
            # Not handled by the reference; Azure Durable Task Scheduler terminates the target.
            term = action.terminateOrchestration
            instances.terminate(
                self.tx, term.instanceId, ev.opt_string(term, "reason"), recursive=term.recurse
            )
        elif which == "rewindOrchestration":
            self._rewind(action.rewindOrchestration)

    def _complete(self, complete: Any) -> None:
        status = complete.orchestrationStatus
        result = complete.result.value if complete.HasField("result") else None
        if status == ev.CONTINUED_AS_NEW:
            self._continue_as_new(complete, result)
            return
        self.status = status
        self.output = result
        self.failure = complete.failureDetails if complete.HasField("failureDetails") else None
        self.completed_at = self.tx.now if ev.is_terminal(status) else None

    def _continue_as_new(self, complete: Any, new_input: str | None) -> None:
        self.clear_history()
        self.input = new_input
        if complete.HasField("newVersion"):
            self.version = complete.newVersion.value
        self.output = None
        self.failure = None
        self.completed_at = None
        # The instance stays RUNNING between generations, as DurableTask.Core (which runs
        # the next generation in the same work item) and durabletask-go report; the
        # reference reports PENDING until the new generation's first step completes.
        self.status = ev.RUNNING
        self.continued = True
        self.execution_id = uuid.uuid4().hex
        # New arrivals (events raised during this step) go after the new start events and
        # the carried-over events; messages scoped to the old execution are dropped.
        marks = ",".join("?" * len(_EXECUTION_SCOPED))
        self.conn.execute(
            f"DELETE FROM inbox WHERE instance_id = ? AND kind IN ({marks})",  # noqa: S608
            (self.instance_id, *_EXECUTION_SCOPED),
        )
        arrivals = self.conn.execute(
            "SELECT kind, event, visible_at, wakes FROM inbox WHERE instance_id = ? ORDER BY id",
            (self.instance_id,),
        ).fetchall()
        self.conn.execute("DELETE FROM inbox WHERE instance_id = ?", (self.instance_id,))
        tags = None if self.tags is None else dict(json.loads(self.tags))
        instances.enqueue(self.tx, self.instance_id, ev.orchestrator_started(self.tx.now))
        instances.enqueue(
            self.tx,
            self.instance_id,
            ev.execution_started(
                self.name,
                self.instance_id,
                new_input,
                version=self.version,
                tags=tags,
                execution_id=self.execution_id,
            ),
        )
        for event in complete.carryoverEvents:
            instances.enqueue(self.tx, self.instance_id, event)
        for row in arrivals:
            self.conn.execute(
                "INSERT INTO inbox (instance_id, kind, event, visible_at, wakes) VALUES (?, ?, ?, ?, ?)",
                (self.instance_id, row["kind"], row["event"], row["visible_at"], row["wakes"]),
            )

    def _schedule_task(self, action: Any) -> None:
        task = action.scheduleTask
        scheduled = pb.HistoryEvent(
            eventId=action.id,
            taskScheduled=pb.TaskScheduledEvent(
                name=task.name,
                version=task.version if task.HasField("version") else None,
                input=task.input if task.HasField("input") else None,
                tags=dict(task.tags),
            ),
        )
        if task.HasField("parentTraceContext"):
            scheduled.taskScheduled.parentTraceContext.CopyFrom(task.parentTraceContext)
        self.append(ev.stamped(scheduled, self.tx.now))
        request = pb.ActivityRequest(
            name=task.name,
            version=task.version if task.HasField("version") else None,
            input=task.input if task.HasField("input") and task.input.value else None,
            orchestrationInstance=pb.OrchestrationInstance(
                instanceId=self.instance_id, executionId=ev.string_value(self.execution_id)
            ),
            taskId=action.id,
            tags=dict(task.tags),
        )
        if task.HasField("parentTraceContext"):
            request.parentTraceContext.CopyFrom(task.parentTraceContext)
        self.conn.execute(
            "INSERT INTO activities (instance_id, execution_id, name, version, request)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                self.instance_id,
                self.execution_id,
                task.name,
                ev.opt_string(task, "version"),
                ev.encode(request),
            ),
        )

    def _create_sub_orchestration(self, action: Any) -> None:
        sub = action.createSubOrchestration
        child_id = sub.instanceId or uuid.uuid4().hex
        encoded_input = ev.opt_string(sub, "input")
        version = ev.opt_string(sub, "version")
        created = helpers.new_sub_orchestration_created_event(
            action.id, sub.name, child_id, encoded_input, version=version
        )
        self.append(ev.stamped(created, self.tx.now))
        try:
            instances.create(
                self.tx,
                child_id,
                sub.name,
                encoded_input,
                version=version,
                tags=dict(sub.tags) or None,
                parent=(self.instance_id, self.execution_id, action.id),
                parent_trace_context=sub.parentTraceContext if sub.HasField("parentTraceContext") else None,
            )
        except instances.InstanceExists as exc:
            instances.enqueue(
                self.tx,
                self.instance_id,
                ev.stamped(helpers.new_sub_orchestration_failed_event(action.id, exc), self.tx.now),
            )

    def _entity_message(self, action: Any) -> None:
        msg = action.sendEntityMessage
        which = msg.WhichOneof("EntityMessageType")
        if which is None:
            return
        body = getattr(msg, which)
        recorded = pb.HistoryEvent(eventId=action.id)
        getattr(recorded, which).CopyFrom(body)
        self.append(ev.stamped(recorded, self.tx.now))
        if which == "entityOperationSignaled":
            target = ev.opt_string(body, "targetInstanceId")
            if target:
                op = pb.HistoryEvent(eventId=-1, entityOperationSignaled=body)
                due = ev.ts_seconds(body.scheduledTime) if body.HasField("scheduledTime") else None
                entities.queue_operation(self.tx, target, ev.stamped(op, self.tx.now), visible_at=due)
        elif which == "entityOperationCalled":
            target = ev.opt_string(body, "targetInstanceId")
            if target:
                op = pb.HistoryEvent(eventId=-1, entityOperationCalled=body)
                if not body.HasField("parentExecutionId"):
                    op.entityOperationCalled.parentExecutionId.value = self.execution_id
                due = ev.ts_seconds(body.scheduledTime) if body.HasField("scheduledTime") else None
                entities.queue_operation(self.tx, target, ev.stamped(op, self.tx.now), visible_at=due)
        elif which == "entityLockRequested":
            owner = ev.opt_string(body, "parentInstanceId") or self.instance_id
            entities.request_lock(self.tx, body.criticalSectionId, owner, list(body.lockSet))
        elif which == "entityUnlockSent":
            target = ev.opt_string(body, "targetInstanceId")
            if target:
                entities.unlock(self.tx, target, body.criticalSectionId)

    def _rewind(self, rewind: Any) -> None:
        """Replaces history with the SDK's rewritten one and rewinds failed sub-orchestrations."""
        new_history = list(rewind.newHistory)
        self.clear_history()
        for event in new_history:
            self.append(event)
        self.status = ev.RUNNING
        self.output = None
        self.failure = None
        self.completed_at = None
        completed: set[int] = set()
        created: dict[int, Any] = {}
        reason: str | None = None
        for event in new_history:
            if event.HasField("subOrchestrationInstanceCreated"):
                created[event.eventId] = event.subOrchestrationInstanceCreated
            elif event.HasField("subOrchestrationInstanceCompleted"):
                completed.add(event.subOrchestrationInstanceCompleted.taskScheduledId)
            elif event.HasField("executionRewound"):
                reason = ev.opt_string(event.executionRewound, "reason")
        for task_id, info in created.items():
            if task_id in completed:
                continue
            child = instances.get(self.conn, info.instanceId)
            parent = (self.instance_id, self.execution_id, task_id)
            if child is None:
                instances.create(
                    self.tx,
                    info.instanceId,
                    info.name,
                    ev.opt_string(info, "input"),
                    version=ev.opt_string(info, "version"),
                    parent=parent,
                )
            else:
                self.conn.execute(
                    "UPDATE instances SET parent_instance_id = ?, parent_execution_id = ?, parent_task_id = ?"
                    " WHERE instance_id = ?",
                    (*parent, info.instanceId),
                )
                if child["status"] == ev.FAILED:
                    prepare_rewind(self.tx, info.instanceId, reason)
        # The rewound history already holds executionRewound: a lone orchestratorStarted
        # makes the instance dispatchable for the post-rewind replay (as the reference).
        self.conn.execute("DELETE FROM inbox WHERE instance_id = ?", (self.instance_id,))
        instances.enqueue(self.tx, self.instance_id, ev.orchestrator_started(self.tx.now))


def finish_execution(
    tx: Tx,
    instance_id: str,
    status: int,
    output: str | None,
    failure: Any,
    parent: tuple[str | None, str | None, int | None],
) -> None:
    """An execution reached a terminal state: drop its inbox, tell the parent, free locks."""
    tx.conn.execute("DELETE FROM inbox WHERE instance_id = ?", (instance_id,))
    parent_id, parent_execution, task_id = parent
    if parent_id and task_id is not None:
        if status == ev.COMPLETED:
            reply = helpers.new_sub_orchestration_completed_event(task_id, output)
        else:
            # Azure Durable Task Scheduler hands the parent the child's own failure
            # details; the reference re-wraps only the message.
            details = failure or pb.TaskFailureDetails(
                errorType="OrchestrationTerminated",
                errorMessage=f"Sub-orchestration '{instance_id}' was terminated",
            )
            reply = pb.HistoryEvent(
                eventId=-1,
                subOrchestrationInstanceFailed=pb.SubOrchestrationInstanceFailedEvent(
                    taskScheduledId=task_id, failureDetails=details
                ),
            )
        instances.deliver(tx, parent_id, reply, execution_id=parent_execution)
    entities.release_locks_of(tx, instance_id)


def force_terminate(tx: Tx, instance_id: str, reason: str | None) -> bool:
    """Marks a live instance TERMINATED in storage at once, without running it.

    Backs ``SkipGracefulOrchestrationTerminations`` (not in the reference; this follows
    Azure Durable Task Scheduler). A step in flight for the instance becomes stale.
    """
    row = instances.get(tx.conn, instance_id)
    if row is None or ev.is_terminal(row["status"]):
        return False
    tx.leases.drop_key("orchestration", instance_id)
    seq = int(
        tx.conn.execute(
            "SELECT COALESCE(MAX(seq), -1) + 1 FROM history WHERE instance_id = ?", (instance_id,)
        ).fetchone()[0]
    )
    completed = ev.stamped(
        helpers.new_execution_completed_event(cast(Any, ev.TERMINATED), reason, None), tx.now
    )
    tx.conn.execute(
        "INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)",
        (instance_id, seq, ev.encode(completed)),
    )
    tx.conn.execute(
        "UPDATE instances SET status = ?, output = ?, failure = NULL, completed_at = ?, last_updated_at = ?"
        " WHERE instance_id = ?",
        (ev.TERMINATED, reason, tx.now, tx.now, instance_id),
    )
    parent = (row["parent_instance_id"], row["parent_execution_id"], row["parent_task_id"])
    finish_execution(tx, instance_id, ev.TERMINATED, reason, None, parent)
    return True


def prepare_rewind(tx: Tx, instance_id: str, reason: str | None) -> None:
    """Puts a FAILED instance back to RUNNING with an ``executionRewound`` event queued."""
    tx.conn.execute(
        "UPDATE instances SET status = ?, output = NULL, failure = NULL, completed_at = NULL,"
        " last_updated_at = ?"
        " WHERE instance_id = ?",
        (ev.RUNNING, tx.now, instance_id),
    )
    tx.leases.drop_key("orchestration", instance_id)
    event = pb.HistoryEvent(
        eventId=-1, executionRewound=pb.ExecutionRewoundEvent(reason=ev.string_value(reason))
    )
    instances.enqueue(tx, instance_id, ev.stamped(event, tx.now))


def apply(tx: Tx, row: Any, lease: Lease, response: Any) -> int:
    """Applies a worker's ``OrchestratorResponse``; returns the resulting status."""
    step = _Step(tx, row, lease)
    step.run(response)
    return step.status
