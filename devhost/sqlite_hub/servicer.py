"""The ``TaskHubSidecarService`` gRPC servicer backed by the SQLite task hub.

Why this module exists: it is the protocol layer. Each RPC validates its request, maps
it to one ``TaskHub`` transition or read, and turns domain outcomes into the same gRPC
status codes as the reference backend (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION,
DEADLINE_EXCEEDED...). A completion for a stale or unknown lease is rejected with
FAILED_PRECONDITION (the reference silently ignores it).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, NoReturn

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from google.protobuf import empty_pb2, wrappers_pb2

from devhost.sqlite_hub import entities, instances, queries, steps
from devhost.sqlite_hub import events as ev
from devhost.sqlite_hub.hub import BadChunk, StaleLease, TaskHub
from devhost.sqlite_hub.longpoll import BadHeader, Kind
from devhost.sqlite_hub.tx import Tx, log

_DEFAULT_WAIT_SECONDS = 30.0
_HISTORY_CHUNK = 100
_MAX_SKIP_BATCH = 500


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort always raises


class SqliteHubServicer(stubs.TaskHubSidecarServiceServicer):
    def __init__(self, hub: TaskHub) -> None:
        self.hub = hub

    # -- basics --------------------------------------------------------------------------

    def Hello(self, request: Any, context: grpc.ServicerContext) -> Any:
        return empty_pb2.Empty()

    def CreateTaskHub(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.CreateTaskHubResponse()

    def DeleteTaskHub(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.DeleteTaskHubResponse()

    # -- instances -----------------------------------------------------------------------

    def StartInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        instance_id = request.instanceId or uuid.uuid4().hex
        replaceable = frozenset(request.orchestrationIdReusePolicy.replaceableStatus)
        # Unlike the reference (which dispatches at once), a scheduled start is honoured,
        # as Azure Durable Task Scheduler does: the instance stays PENDING until then.
        start_at = (
            ev.ts_seconds(request.scheduledStartTimestamp)
            if request.HasField("scheduledStartTimestamp")
            else None
        )

        def start(tx: Tx) -> None:
            instances.create(
                tx,
                instance_id,
                request.name,
                ev.opt_string(request, "input"),
                version=ev.opt_string(request, "version"),
                tags=dict(request.tags) or None,
                start_at=start_at,
                parent_trace_context=request.parentTraceContext
                if request.HasField("parentTraceContext")
                else None,
                replaceable=replaceable,
            )

        try:
            self.hub.write(start)
        except instances.InstanceExists:
            detail = " with non-replaceable status" if replaceable else ""
            _abort(
                context,
                grpc.StatusCode.ALREADY_EXISTS,
                f"Orchestration instance '{instance_id}' already exists{detail}",
            )
        return pb.CreateInstanceResponse(instanceId=instance_id)

    def _long_poll(self, context: grpc.ServicerContext, kind: Kind, key: str) -> None:
        """Holds the answer while the row is unchanged, when the caller asks to (longpoll.py)."""
        try:
            self.hub.long_poll.wait(context, self.hub.read, kind, key)
        except BadHeader as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def GetInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._long_poll(context, "instance", request.instanceId)
        row = self.hub.read(lambda conn: instances.get(conn, request.instanceId))
        if row is None:
            return pb.GetInstanceResponse(exists=False)
        return pb.GetInstanceResponse(
            exists=True, orchestrationState=instances.state_message(row, request.getInputsAndOutputs)
        )

    def _wait(self, request: Any, context: grpc.ServicerContext, started: bool) -> Any:
        remaining = context.time_remaining()
        timeout = (
            _DEFAULT_WAIT_SECONDS if remaining is None or remaining > 1e8 else max(0.0, remaining - 0.05)
        )
        if started:
            row, ok = self.hub.wait_for(request.instanceId, lambda r: r["status"] != ev.PENDING, timeout)
        else:
            row, ok = self.hub.wait_for(request.instanceId, lambda r: ev.is_terminal(r["status"]), timeout)
        if ok:
            return pb.GetInstanceResponse(
                exists=True, orchestrationState=instances.state_message(row, request.getInputsAndOutputs)
            )
        if row is not None:
            what = "start" if started else "complete"
            _abort(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"Timed out waiting for instance '{request.instanceId}' to {what}",
            )
        return pb.GetInstanceResponse(exists=False)

    def WaitForInstanceStart(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._wait(request, context, started=True)

    def WaitForInstanceCompletion(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._wait(request, context, started=False)

    def _require(self, context: grpc.ServicerContext, tx: Tx, instance_id: str) -> Any:
        row = instances.get(tx.conn, instance_id)
        if row is None:
            raise _NotFound(f"Orchestration instance '{instance_id}' not found")
        return row

    def _run(self, context: grpc.ServicerContext, fn: Any) -> Any:
        try:
            return self.hub.write(fn)
        except _NotFound as exc:
            _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except _Precondition as exc:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))

    def RaiseEvent(self, request: Any, context: grpc.ServicerContext) -> Any:
        def raise_event(tx: Tx) -> None:
            self._require(context, tx, request.instanceId)
            event = pb.HistoryEvent(
                eventId=-1,
                eventRaised=pb.EventRaisedEvent(
                    name=request.name, input=request.input if request.HasField("input") else None
                ),
            )
            instances.deliver(tx, request.instanceId, event)

        self._run(context, raise_event)
        return pb.RaiseEventResponse()

    def TerminateInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.hub.write(
            lambda tx: instances.terminate(
                tx, request.instanceId, ev.opt_string(request, "output"), recursive=request.recursive
            )
        )
        return pb.TerminateResponse()

    def SuspendInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._run(
            context,
            lambda tx: instances.suspend(
                tx, self._require(context, tx, request.instanceId), ev.opt_string(request, "reason")
            ),
        )
        return pb.SuspendResponse()

    def ResumeInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._run(
            context,
            lambda tx: instances.resume(
                tx, self._require(context, tx, request.instanceId), ev.opt_string(request, "reason")
            ),
        )
        return pb.ResumeResponse()

    def PurgeInstances(self, request: Any, context: grpc.ServicerContext) -> Any:
        def purge(tx: Tx) -> int:
            if request.instanceId:
                return instances.purge(tx, request.instanceId, recursive=request.recursive)
            if request.HasField("purgeInstanceFilter"):
                ids = queries.purge_candidates(tx.conn, request.purgeInstanceFilter)
                return sum(instances.purge(tx, i, recursive=request.recursive) for i in ids)
            return 0

        count = self.hub.write(purge)
        return pb.PurgeInstancesResponse(
            deletedInstanceCount=count, isComplete=wrappers_pb2.BoolValue(value=True)
        )

    def RestartInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        def restart(tx: Tx) -> str:
            row = self._require(context, tx, request.instanceId)
            if not ev.is_terminal(row["status"]):
                raise _Precondition(
                    f"Orchestration instance '{request.instanceId}' is not in a terminal state"
                )
            new_id = uuid.uuid4().hex if request.restartWithNewInstanceId else request.instanceId
            tags = None if row["tags"] is None else dict(json.loads(row["tags"]))
            instances.create(tx, new_id, row["name"], row["input"], version=row["version"], tags=tags)
            return new_id

        new_id: str = self._run(context, restart)
        return pb.RestartInstanceResponse(instanceId=new_id)

    def RewindInstance(self, request: Any, context: grpc.ServicerContext) -> Any:
        def rewind(tx: Tx) -> None:
            row = self._require(context, tx, request.instanceId)
            if row["status"] != ev.FAILED:
                raise _Precondition(f"Orchestration instance '{request.instanceId}' is not in a failed state")
            steps.prepare_rewind(tx, request.instanceId, ev.opt_string(request, "reason"))

        self._run(context, rewind)
        return pb.RewindInstanceResponse()

    def QueryInstances(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.hub.read(lambda conn: queries.query_instances(conn, request.query))

    def ListInstanceIds(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.hub.read(lambda conn: queries.list_instance_ids(conn, request))

    def StreamInstanceHistory(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        def load(conn: Any) -> list[bytes] | None:
            if instances.get(conn, request.instanceId) is None:
                return None
            rows = conn.execute(
                "SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (request.instanceId,)
            ).fetchall()
            return [bytes(r[0]) for r in rows]

        blobs = self.hub.read(load)
        if blobs is None:
            _abort(
                context, grpc.StatusCode.NOT_FOUND, f"Orchestration instance '{request.instanceId}' not found"
            )
        for offset in range(0, len(blobs), _HISTORY_CHUNK):
            yield pb.HistoryChunk(
                events=[ev.decode_event(b) for b in blobs[offset : offset + _HISTORY_CHUNK]]
            )

    def SkipGracefulOrchestrationTerminations(self, request: Any, context: grpc.ServicerContext) -> Any:
        ids = list(request.instanceBatch.instanceIds)
        if len(ids) > _MAX_SKIP_BATCH:
            _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"at most {_MAX_SKIP_BATCH} instances at a time"
            )
        reason = ev.opt_string(request, "reason")
        done: list[bool] = self.hub.write(lambda tx: [steps.force_terminate(tx, i, reason) for i in ids])
        return pb.SkipGracefulOrchestrationTerminationsResponse(
            unterminatedInstanceIds=[i for i, ok in zip(ids, done, strict=True) if not ok]
        )

    # -- entities ------------------------------------------------------------------------

    def SignalEntity(self, request: Any, context: grpc.ServicerContext) -> Any:
        scheduled = ev.ts_seconds(request.scheduledTime) if request.HasField("scheduledTime") else None
        self.hub.write(
            lambda tx: entities.signal(
                tx,
                request.instanceId,
                request.name,
                ev.opt_string(request, "input"),
                request_id=request.requestId or None,
                scheduled=scheduled,
            )
        )
        return pb.SignalEntityResponse()

    def GetEntity(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._long_poll(context, "entity", request.instanceId)

        def get(conn: Any) -> Any:
            row = entities.get(conn, request.instanceId)
            if row is None:
                return pb.GetEntityResponse(exists=False)
            return pb.GetEntityResponse(
                exists=True, entity=entities.metadata(conn, row, request.includeState)
            )

        return self.hub.read(get)

    def QueryEntities(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.hub.read(lambda conn: queries.query_entities(conn, request.query))

    def CleanEntityStorage(self, request: Any, context: grpc.ServicerContext) -> Any:
        after = ev.opt_string(request, "continuationToken")
        removed, released, token = self.hub.write(
            lambda tx: entities.clean_storage(
                tx, request.removeEmptyEntities, request.releaseOrphanedLocks, after
            )
        )
        return pb.CleanEntityStorageResponse(
            emptyEntitiesRemoved=removed,
            orphanedLocksReleased=released,
            continuationToken=ev.string_value(token),
        )

    # -- work items ----------------------------------------------------------------------

    def GetWorkItems(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        stream = self.hub.open_stream(request)
        context.add_callback(lambda: self.hub.close_stream(stream))
        log.info("worker stream %d connected", stream.info.stream_id)
        last_sent = time.monotonic()
        try:
            while context.is_active() and not self.hub.signals.closed:
                seen = self.hub.signals.work_gen
                item, wake_at = self.hub.take(stream)
                if item is not None:
                    yield item
                    last_sent = time.monotonic()
                    continue
                ping_in = self.hub.health_ping_seconds - (time.monotonic() - last_sent)
                if ping_in <= 0:
                    yield pb.WorkItem(healthPing=pb.HealthPing())
                    last_sent = time.monotonic()
                    continue
                timeout = ping_in if wake_at is None else min(ping_in, max(0.0, wake_at - ev.now()) + 0.001)
                self.hub.signals.wait_work(seen, timeout)
        finally:
            self.hub.close_stream(stream)

    def _complete(self, context: grpc.ServicerContext, fn: Any, arg: Any) -> Any:
        try:
            fn(arg)
        except StaleLease as exc:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except steps.HistoryTooLarge as exc:
            _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        return pb.CompleteTaskResponse()

    def CompleteOrchestratorTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return self._complete(context, self.hub.complete_orchestration, request)
        except BadChunk as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def CompleteActivityTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._complete(context, self.hub.complete_activity, request)

    def CompleteEntityTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._complete(context, self.hub.complete_entity, request)

    def AbandonTaskOrchestratorWorkItem(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.hub.abandon(request.completionToken, "orchestration")
        return pb.AbandonOrchestrationTaskResponse()

    def AbandonTaskActivityWorkItem(self, request: Any, context: grpc.ServicerContext) -> Any:
        # The reference drops abandoned activities; they are handed out again here, as
        # Azure Durable Task Scheduler does.
        self.hub.abandon(request.completionToken, "activity")
        return pb.AbandonActivityTaskResponse()

    def AbandonTaskEntityWorkItem(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.hub.abandon(request.completionToken, "entity")
        return pb.AbandonEntityTaskResponse()


class _NotFound(Exception):
    pass


class _Precondition(Exception):
    pass
