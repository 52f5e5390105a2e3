"""Protocol-level tests of leases and entity protocol versions, driving the sidecar with raw gRPC.

These pin down behaviour the reference backend does not have (it ignores stale
completions and always sends entityRequestV2), so they run against the SQLite hub only.
"""

from __future__ import annotations

import pathlib
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from google.protobuf import wrappers_pb2

from devhost.sqlite_hub import SqliteSidecar

TIMEOUT = 10


class RawStream:
    """A GetWorkItems stream read on a background thread."""

    def __init__(self, stub: Any, request: Any | None = None) -> None:
        self.call = stub.GetWorkItems(request or pb.GetWorkItemsRequest())
        self.items: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for item in self.call:
                if not item.HasField("healthPing"):
                    self.items.put(item)
        except grpc.RpcError:
            pass

    def next(self, timeout: float = TIMEOUT) -> Any:
        return self.items.get(timeout=timeout)

    def empty_for(self, seconds: float) -> bool:
        try:
            self.items.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(timeout=5)


@pytest.fixture
def sidecar(tmp_path: pathlib.Path) -> Iterator[SqliteSidecar]:
    hub = SqliteSidecar(tmp_path / "taskhub.db")
    hub.lease_seconds = 1.5
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
        check = SqliteSidecar(hub.db_path)
        check.storage.open()
        assert check.integrity_check() == "ok"
        check.storage.close()


@pytest.fixture
def stub(sidecar: SqliteSidecar) -> Iterator[Any]:
    with grpc.insecure_channel(sidecar.address) as channel:
        yield stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]


def start(stub: Any, iid: str, name: str = "orch") -> None:
    stub.StartInstance(
        pb.CreateInstanceRequest(instanceId=iid, name=name, input=wrappers_pb2.StringValue(value="1"))
    )


def complete_action(result: str = '"done"') -> Any:
    return pb.OrchestratorAction(
        id=-1,
        completeOrchestration=pb.CompleteOrchestrationAction(
            orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED,
            result=wrappers_pb2.StringValue(value=result),
        ),
    )


def status(stub: Any, iid: str) -> int:
    return int(stub.GetInstance(pb.GetInstanceRequest(instanceId=iid)).orchestrationState.orchestrationStatus)


def test_stale_and_repeated_completions_are_rejected(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "stale-1")
        item = stream.next()
        assert item.orchestratorRequest.instanceId == "stale-1"
        kinds = [e.WhichOneof("eventType") for e in item.orchestratorRequest.newEvents]
        assert kinds == ["orchestratorStarted", "executionStarted"]
        bogus = pb.OrchestratorResponse(
            instanceId="stale-1", completionToken="o-bogus", actions=[complete_action()]
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.CompleteOrchestratorTask(bogus)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        good = pb.OrchestratorResponse(
            instanceId="stale-1", completionToken=item.completionToken, actions=[complete_action()]
        )
        stub.CompleteOrchestratorTask(good)
        with pytest.raises(grpc.RpcError) as err:
            stub.CompleteOrchestratorTask(good)  # the same step never applies twice
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        res = stub.GetInstance(pb.GetInstanceRequest(instanceId="stale-1", getInputsAndOutputs=True))
        assert res.orchestrationState.orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED
        history = [
            e
            for chunk in stub.StreamInstanceHistory(pb.StreamInstanceHistoryRequest(instanceId="stale-1"))
            for e in chunk.events
        ]
        assert sum(1 for e in history if e.HasField("executionCompleted")) == 1
    finally:
        stream.close()


def test_closed_stream_hands_work_out_again_immediately(stub: Any, sidecar: SqliteSidecar) -> None:
    assert sidecar.hub is not None
    sidecar.hub.leases.duration = 300.0  # so a re-delivery can only come from the closed stream
    first = RawStream(stub)
    start(stub, "redo-1")
    item = first.next()
    began = time.monotonic()
    first.close()
    second = RawStream(stub)
    try:
        again = second.next(timeout=10)
        assert time.monotonic() - began < 5.0  # typically a few ms; generous for loaded CI
        assert again.orchestratorRequest.instanceId == "redo-1"
        assert again.completionToken != item.completionToken
        late = pb.OrchestratorResponse(
            instanceId="redo-1", completionToken=item.completionToken, actions=[complete_action()]
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.CompleteOrchestratorTask(late)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="redo-1", completionToken=again.completionToken, actions=[complete_action()]
            )
        )
        assert status(stub, "redo-1") == pb.ORCHESTRATION_STATUS_COMPLETED
    finally:
        second.close()


def test_expired_lease_hands_work_out_again(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "expire-1")
        item = stream.next()
        assert stream.empty_for(0.5)  # still leased
        again = stream.next(timeout=5)  # lease_seconds = 1.5
        assert again.orchestratorRequest.instanceId == "expire-1"
        with pytest.raises(grpc.RpcError):
            stub.CompleteOrchestratorTask(
                pb.OrchestratorResponse(
                    instanceId="expire-1", completionToken=item.completionToken, actions=[complete_action()]
                )
            )
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="expire-1", completionToken=again.completionToken, actions=[complete_action()]
            )
        )
        assert status(stub, "expire-1") == pb.ORCHESTRATION_STATUS_COMPLETED
    finally:
        stream.close()


def test_activity_abandon_and_completion(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "act-1")
        step = stream.next()
        schedule = pb.OrchestratorAction(
            id=1, scheduleTask=pb.ScheduleTaskAction(name="work", input=wrappers_pb2.StringValue(value="42"))
        )
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="act-1", completionToken=step.completionToken, actions=[schedule]
            )
        )
        activity = stream.next()
        assert activity.activityRequest.name == "work" and activity.activityRequest.input.value == "42"
        stub.AbandonTaskActivityWorkItem(
            pb.AbandonActivityTaskRequest(completionToken=activity.completionToken)
        )
        again = stream.next()
        assert again.activityRequest.taskId == 1 and again.completionToken != activity.completionToken
        with pytest.raises(grpc.RpcError):
            stub.CompleteActivityTask(
                pb.ActivityResponse(
                    instanceId="act-1",
                    taskId=1,
                    completionToken=activity.completionToken,
                    result=wrappers_pb2.StringValue(value='"x"'),
                )
            )
        stub.CompleteActivityTask(
            pb.ActivityResponse(
                instanceId="act-1",
                taskId=1,
                completionToken=again.completionToken,
                result=wrappers_pb2.StringValue(value='"y"'),
            )
        )
        step2 = stream.next()
        new = [e.WhichOneof("eventType") for e in step2.orchestratorRequest.newEvents]
        assert new == ["orchestratorStarted", "taskCompleted"]
        assert step2.orchestratorRequest.newEvents[1].taskCompleted.result.value == '"y"'
    finally:
        stream.close()


def test_events_raised_mid_step_wait_for_the_next_step(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "mid-1")
        step = stream.next()
        stub.RaiseEvent(
            pb.RaiseEventRequest(instanceId="mid-1", name="e", input=wrappers_pb2.StringValue(value="1"))
        )
        assert stream.empty_for(0.3)  # the instance is leased: no second step in parallel
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(instanceId="mid-1", completionToken=step.completionToken)
        )
        step2 = stream.next()
        assert [e.WhichOneof("eventType") for e in step2.orchestratorRequest.newEvents] == [
            "orchestratorStarted",
            "eventRaised",
        ]
        assert len(step2.orchestratorRequest.pastEvents) == 3
    finally:
        stream.close()


def _entity_step(stub: Any, stream: RawStream) -> Any:
    item = stream.next()
    assert item.HasField("entityRequest"), item
    return item


def test_entity_v1_protocol_for_batch_workers(stub: Any) -> None:
    """A worker declaring maxConcurrentEntityWorkItems gets V1 EntityBatchRequests."""
    orch_stream = RawStream(
        stub,
        pb.GetWorkItemsRequest(
            workItemFilters=pb.WorkItemFilters(orchestrations=[pb.OrchestrationFilter(name="orch")])
        ),
    )
    entity_stream = RawStream(
        stub,
        pb.GetWorkItemsRequest(
            maxConcurrentEntityWorkItems=1,
            workItemFilters=pb.WorkItemFilters(entities=[pb.EntityFilter(name="ctr")]),
        ),
    )
    try:
        stub.SignalEntity(
            pb.SignalEntityRequest(
                instanceId="@ctr@k", name="add", input=wrappers_pb2.StringValue(value="5"), requestId="r1"
            )
        )
        batch = _entity_step(stub, entity_stream)
        assert batch.entityRequest.instanceId == "@ctr@k"
        assert [(o.operation, o.requestId, o.input.value) for o in batch.entityRequest.operations] == [
            ("add", "r1", "5")
        ]
        stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=batch.completionToken,
                entityState=wrappers_pb2.StringValue(value="5"),
                results=[pb.OperationResult(success=pb.OperationResultSuccess())],
            )
        )
        got = stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@k", includeState=True))
        assert got.exists and got.entity.serializedState.value == "5"

        # An orchestration calls the entity; the V1 result (no operationInfos) is routed back.
        start(stub, "caller-1")
        step = orch_stream.next()
        call = pb.OrchestratorAction(
            id=1,
            sendEntityMessage=pb.SendEntityMessageAction(
                entityOperationCalled=pb.EntityOperationCalledEvent(
                    requestId="r2",
                    operation="get",
                    parentInstanceId=wrappers_pb2.StringValue(value="caller-1"),
                    targetInstanceId=wrappers_pb2.StringValue(value="@ctr@k"),
                )
            ),
        )
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="caller-1", completionToken=step.completionToken, actions=[call]
            )
        )
        batch = _entity_step(stub, entity_stream)
        assert batch.entityRequest.entityState.value == "5"
        stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=batch.completionToken,
                entityState=wrappers_pb2.StringValue(value="5"),
                results=[
                    pb.OperationResult(
                        success=pb.OperationResultSuccess(result=wrappers_pb2.StringValue(value="5"))
                    )
                ],
            )
        )
        step2 = orch_stream.next()
        reply = step2.orchestratorRequest.newEvents[-1]
        assert reply.HasField("entityOperationCompleted")
        assert reply.entityOperationCompleted.requestId == "r2"
        assert reply.entityOperationCompleted.output.value == "5"
    finally:
        orch_stream.close()
        entity_stream.close()


def test_entity_v2_protocol_by_default(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        stub.SignalEntity(pb.SignalEntityRequest(instanceId="@ctr@v2", name="add", requestId="r1"))
        item = stream.next()
        assert item.HasField("entityRequestV2")
        assert item.entityRequestV2.operationRequests[0].entityOperationSignaled.operation == "add"
        with pytest.raises(grpc.RpcError) as err:
            stub.CompleteEntityTask(pb.EntityBatchResult(completionToken="e-stale"))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        stream.close()


def test_work_item_filters(stub: Any) -> None:
    only_b = RawStream(
        stub,
        pb.GetWorkItemsRequest(
            workItemFilters=pb.WorkItemFilters(orchestrations=[pb.OrchestrationFilter(name="b")])
        ),
    )
    try:
        for i in range(100):  # a long queue of work this stream may not take comes first
            start(stub, f"filter-a{i}", name="a")
        start(stub, "filter-b", name="b")
        item = only_b.next()
        assert item.orchestratorRequest.instanceId == "filter-b"
        assert only_b.empty_for(0.3)
    finally:
        only_b.close()


def test_entity_partial_and_failed_batches(stub: Any) -> None:
    """Unprocessed operations stay queued; a failed batch keeps state and fails the calls."""
    orch_stream = RawStream(
        stub,
        pb.GetWorkItemsRequest(
            workItemFilters=pb.WorkItemFilters(orchestrations=[pb.OrchestrationFilter(name="orch")])
        ),
    )
    for request_id in ("r1", "r2"):  # both queued before any entity worker connects
        stub.SignalEntity(pb.SignalEntityRequest(instanceId="@ctr@p", name="add", requestId=request_id))
    entity_stream = RawStream(
        stub,
        pb.GetWorkItemsRequest(workItemFilters=pb.WorkItemFilters(entities=[pb.EntityFilter(name="ctr")])),
    )
    try:
        batch = entity_stream.next()
        assert len(batch.entityRequestV2.operationRequests) == 2
        stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=batch.completionToken,
                entityState=wrappers_pb2.StringValue(value="1"),
                results=[pb.OperationResult(success=pb.OperationResultSuccess())],
            )
        )
        rest = entity_stream.next()
        assert [o.entityOperationSignaled.requestId for o in rest.entityRequestV2.operationRequests] == ["r2"]
        stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=rest.completionToken,
                entityState=wrappers_pb2.StringValue(value="2"),
                results=[pb.OperationResult(success=pb.OperationResultSuccess())],
            )
        )

        start(stub, "caller-p")
        step = orch_stream.next()
        call = pb.OrchestratorAction(
            id=1,
            sendEntityMessage=pb.SendEntityMessageAction(
                entityOperationCalled=pb.EntityOperationCalledEvent(
                    requestId="r3",
                    operation="get",
                    parentInstanceId=wrappers_pb2.StringValue(value="caller-p"),
                    targetInstanceId=wrappers_pb2.StringValue(value="@ctr@p"),
                )
            ),
        )
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="caller-p", completionToken=step.completionToken, actions=[call]
            )
        )
        batch = entity_stream.next()
        stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=batch.completionToken,
                failureDetails=pb.TaskFailureDetails(errorType="Crash", errorMessage="worker crashed"),
            )
        )
        reply = orch_stream.next().orchestratorRequest.newEvents[-1]
        assert reply.HasField("entityOperationFailed")
        assert reply.entityOperationFailed.failureDetails.errorMessage == "worker crashed"
        got = stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@p", includeState=True))
        assert got.entity.serializedState.value == "2"
    finally:
        orch_stream.close()
        entity_stream.close()


def test_abandoned_orchestration_and_entity_work_is_handed_out_again(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "abandon-1")
        item = stream.next()
        stub.AbandonTaskOrchestratorWorkItem(
            pb.AbandonOrchestrationTaskRequest(completionToken=item.completionToken)
        )
        again = stream.next()
        assert again.orchestratorRequest.instanceId == "abandon-1"
        assert [e.WhichOneof("eventType") for e in again.orchestratorRequest.newEvents] == [
            "orchestratorStarted",
            "executionStarted",
        ]
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="abandon-1", completionToken=again.completionToken, actions=[complete_action()]
            )
        )
        stub.SignalEntity(pb.SignalEntityRequest(instanceId="@ctr@ab", name="add", requestId="r1"))
        batch = stream.next()
        stub.AbandonTaskEntityWorkItem(pb.AbandonEntityTaskRequest(completionToken=batch.completionToken))
        stub.AbandonTaskEntityWorkItem(pb.AbandonEntityTaskRequest(completionToken="e-unknown"))  # ignored
        batch2 = stream.next()
        assert batch2.entityRequestV2.operationRequests[0].entityOperationSignaled.requestId == "r1"
        stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=batch2.completionToken,
                entityState=wrappers_pb2.StringValue(value="1"),
                results=[pb.OperationResult(success=pb.OperationResultSuccess())],
            )
        )
        got = stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@ab", includeState=True))
        assert got.entity.serializedState.value == "1" and got.entity.backlogQueueSize == 0
    finally:
        stream.close()


def test_locks_are_granted_released_and_orphans_cleaned(stub: Any, sidecar: SqliteSidecar) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "locker")
        step = stream.next()
        lock = pb.OrchestratorAction(
            id=1,
            sendEntityMessage=pb.SendEntityMessageAction(
                entityLockRequested=pb.EntityLockRequestedEvent(
                    criticalSectionId="cs-1",
                    lockSet=["@ctr@l1", "@ctr@l2"],
                    parentInstanceId=wrappers_pb2.StringValue(value="locker"),
                )
            ),
        )
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(instanceId="locker", completionToken=step.completionToken, actions=[lock])
        )
        granted = stream.next()
        assert granted.orchestratorRequest.newEvents[-1].entityLockGranted.criticalSectionId == "cs-1"
        for eid in ("@ctr@l1", "@ctr@l2"):
            got = stub.GetEntity(pb.GetEntityRequest(instanceId=eid))
            assert got.exists and got.entity.lockedBy.value == "cs-1"
        # A signal from someone else waits while the entity is locked.
        stub.SignalEntity(pb.SignalEntityRequest(instanceId="@ctr@l1", name="add", requestId="other"))
        assert stream.empty_for(0.3)
        # Completing the orchestration releases its locks; the waiting signal then runs.
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="locker", completionToken=granted.completionToken, actions=[complete_action()]
            )
        )
        waiting = stream.next()
        assert waiting.entityRequestV2.instanceId == "@ctr@l1"
        assert not stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@l2")).entity.HasField("lockedBy")
        stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=waiting.completionToken,
                results=[pb.OperationResult(success=pb.OperationResultSuccess())],
            )
        )
        # A lock whose owner is gone is orphaned and released by CleanEntityStorage.
        with sidecar.storage.write() as conn:
            conn.execute(
                "UPDATE entities SET locked_by = 'cs-x', lock_owner = 'ghost' WHERE entity_id = '@ctr@l2'"
            )
        res = stub.CleanEntityStorage(pb.CleanEntityStorageRequest(releaseOrphanedLocks=True))
        assert res.orphanedLocksReleased == 1
        res = stub.CleanEntityStorage(pb.CleanEntityStorageRequest(removeEmptyEntities=True))
        assert res.emptyEntitiesRemoved == 2
    finally:
        stream.close()


def test_skip_graceful_terminations(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "skip-1")
        item = stream.next()  # a step is in flight and becomes stale
        res = stub.SkipGracefulOrchestrationTerminations(
            pb.SkipGracefulOrchestrationTerminationsRequest(
                instanceBatch=pb.InstanceBatch(instanceIds=["skip-1", "skip-missing"]),
                reason=wrappers_pb2.StringValue(value='"forced"'),
            )
        )
        assert list(res.unterminatedInstanceIds) == ["skip-missing"]
        state = stub.GetInstance(pb.GetInstanceRequest(instanceId="skip-1", getInputsAndOutputs=True))
        assert state.orchestrationState.orchestrationStatus == pb.ORCHESTRATION_STATUS_TERMINATED
        assert state.orchestrationState.output.value == '"forced"'
        with pytest.raises(grpc.RpcError) as err:
            stub.CompleteOrchestratorTask(
                pb.OrchestratorResponse(
                    instanceId="skip-1", completionToken=item.completionToken, actions=[complete_action()]
                )
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        done = stub.WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId="skip-1"), timeout=5)
        assert done.orchestrationState.orchestrationStatus == pb.ORCHESTRATION_STATUS_TERMINATED
    finally:
        stream.close()


def test_idle_streams_get_health_pings(tmp_path: pathlib.Path) -> None:
    hub = SqliteSidecar(tmp_path / "ping.db")
    hub.health_ping_seconds = 0.2
    hub.start()
    try:
        with grpc.insecure_channel(hub.address) as channel:
            stub: Any = stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
            call = stub.GetWorkItems(pb.GetWorkItemsRequest())
            began = time.monotonic()
            first = next(iter(call))
            assert first.HasField("healthPing")
            assert 0.1 <= time.monotonic() - began < 5
            call.cancel()
    finally:
        hub.stop()


def test_chunked_orchestrator_response(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "chunks-1")
        item = stream.next()
        token = item.completionToken
        first = pb.OrchestratorAction(
            id=1, scheduleTask=pb.ScheduleTaskAction(name="a", input=wrappers_pb2.StringValue(value="1"))
        )
        second = pb.OrchestratorAction(
            id=2, scheduleTask=pb.ScheduleTaskAction(name="b", input=wrappers_pb2.StringValue(value="2"))
        )
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="chunks-1",
                completionToken=token,
                actions=[first],
                isPartial=True,
                chunkIndex=wrappers_pb2.Int32Value(value=0),
            )
        )
        with pytest.raises(grpc.RpcError) as err:  # out of order
            stub.CompleteOrchestratorTask(
                pb.OrchestratorResponse(
                    instanceId="chunks-1", completionToken=token, chunkIndex=wrappers_pb2.Int32Value(value=5)
                )
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert stream.empty_for(0.2)  # nothing applied before the last chunk
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="chunks-1",
                completionToken=token,
                actions=[second],
                chunkIndex=wrappers_pb2.Int32Value(value=1),
            )
        )
        names = sorted(stream.next().activityRequest.name for _ in range(2))
        assert names == ["a", "b"]
        history = [
            e
            for chunk in stub.StreamInstanceHistory(pb.StreamInstanceHistoryRequest(instanceId="chunks-1"))
            for e in chunk.events
        ]
        assert sum(1 for e in history if e.HasField("taskScheduled")) == 2
    finally:
        stream.close()


def test_declared_concurrency_limits_outstanding_work(stub: Any) -> None:
    stream = RawStream(stub, pb.GetWorkItemsRequest(maxConcurrentActivityWorkItems=1))
    try:
        start(stub, "limit-1")
        step = stream.next()
        actions = [
            pb.OrchestratorAction(id=i, scheduleTask=pb.ScheduleTaskAction(name=f"work{i}")) for i in (1, 2)
        ]
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="limit-1", completionToken=step.completionToken, actions=actions
            )
        )
        first = stream.next()
        assert first.activityRequest.name == "work1"
        assert stream.empty_for(0.3)  # one activity outstanding is the declared limit
        stub.CompleteActivityTask(
            pb.ActivityResponse(instanceId="limit-1", taskId=1, completionToken=first.completionToken)
        )
        kinds = {stream.next().WhichOneof("request") for _ in range(2)}
        assert kinds == {"activityRequest", "orchestratorRequest"}
    finally:
        stream.close()
