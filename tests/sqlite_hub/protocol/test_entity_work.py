"""Protocol-level tests of entity work: both request versions, partial and failed batches,
locks and work filters, with raw gRPC against the SQLite hub.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import timestamp_pb2, wrappers_pb2

from devhost.sqlite_hub.dispatch import matches
from tests.sqlite_hub.protocol.raw import RawStream, complete_action, respond, start, status


def _entity_step(stub: Any, stream: RawStream) -> Any:
    item = stream.next()
    assert item.HasField("entityRequest"), item
    return item


def orchestrations_of(stub: Any, name: str) -> RawStream:
    """A work-item stream that takes only orchestrations named `name`."""
    only = pb.WorkItemFilters(orchestrations=[pb.OrchestrationFilter(name=name)])
    return RawStream(stub, pb.GetWorkItemsRequest(workItemFilters=only))


def entities_of(stub: Any, name: str) -> RawStream:
    """A work-item stream that takes only entities named `name`."""
    only = pb.WorkItemFilters(entities=[pb.EntityFilter(name=name)])
    return RawStream(stub, pb.GetWorkItemsRequest(workItemFilters=only))


def test_entity_v1_protocol_for_batch_workers(stub: Any) -> None:
    """A worker declaring maxConcurrentEntityWorkItems gets V1 EntityBatchRequests."""
    orch_stream = orchestrations_of(stub, "orch")
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
    only_b = orchestrations_of(stub, "b")
    try:
        for i in range(100):  # a long queue of work this stream may not take comes first
            start(stub, f"filter-a{i}", name="a")
        start(stub, "filter-b", name="b")
        item = only_b.next()
        assert item.orchestratorRequest.instanceId == "filter-b"
        assert only_b.empty_for(0.3)
    finally:
        only_b.close()


def test_work_item_filters_with_versions(stub: Any) -> None:
    """A filter naming versions hands out only those versions; one naming none, every version."""
    only_v2 = RawStream(
        stub,
        pb.GetWorkItemsRequest(
            workItemFilters=pb.WorkItemFilters(
                orchestrations=[pb.OrchestrationFilter(name="v", versions=["2"])]
            )
        ),
    )
    try:
        for iid, version in (("ver-1", "1"), ("ver-none", None), ("ver-2", "2")):  # v2 comes last
            stub.StartInstance(
                pb.CreateInstanceRequest(
                    instanceId=iid,
                    name="v",
                    version=wrappers_pb2.StringValue(value=version) if version else None,
                    input=wrappers_pb2.StringValue(value="1"),
                )
            )
        item = only_v2.next()
        assert item.orchestratorRequest.instanceId == "ver-2"
        assert only_v2.empty_for(0.3)
    finally:
        only_v2.close()
    any_version = orchestrations_of(stub, "v")
    try:
        taken = {any_version.next().orchestratorRequest.instanceId for _ in range(2)}
        assert taken == {"ver-1", "ver-none"}
    finally:
        any_version.close()


def test_activity_filters_with_versions(stub: Any) -> None:
    """Activities are handed out by name and version too, past earlier ones that do not match."""
    scheduler = RawStream(
        stub,
        pb.GetWorkItemsRequest(
            workItemFilters=pb.WorkItemFilters(orchestrations=[pb.OrchestrationFilter(name="sched-v")])
        ),
    )
    only_v2 = RawStream(
        stub,
        pb.GetWorkItemsRequest(
            workItemFilters=pb.WorkItemFilters(activities=[pb.ActivityFilter(name="act", versions=["2"])])
        ),
    )
    try:
        start(stub, "act-versions", name="sched-v")
        step = scheduler.next()
        actions = [
            pb.OrchestratorAction(
                id=i,
                scheduleTask=pb.ScheduleTaskAction(
                    name="act", version=wrappers_pb2.StringValue(value=v) if v else None
                ),
            )
            for i, v in ((1, "1"), (2, None), (3, "2"))  # the matching one comes last
        ]
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="act-versions", completionToken=step.completionToken, actions=actions
            )
        )
        item = only_v2.next()
        assert (item.activityRequest.name, item.activityRequest.taskId) == ("act", 3)
        assert only_v2.empty_for(0.3)
    finally:
        only_v2.close()
        scheduler.close()


def test_entity_partial_and_failed_batches(stub: Any) -> None:
    """Unprocessed operations stay queued; a failed batch keeps state and fails the calls."""
    orch_stream = orchestrations_of(stub, "orch")
    for request_id in ("r1", "r2"):  # both queued before any entity worker connects
        stub.SignalEntity(pb.SignalEntityRequest(instanceId="@ctr@p", name="add", requestId=request_id))
    entity_stream = entities_of(stub, "ctr")
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
        assert reply.entityOperationFailed.requestId == "r3"  # the caller matches it to its call
        assert reply.entityOperationFailed.failureDetails.errorMessage == "worker crashed"
        got = stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@p", includeState=True))
        assert got.entity.serializedState.value == "2"
        plain = stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@p"))
        assert plain.exists and not plain.entity.HasField("serializedState")  # state only when asked
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


def test_locks_are_granted_and_released(stub: Any) -> None:
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
        # Released and never used: l2 has no state, lock or queue, so it no longer exists.
        assert not stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@l2")).exists
        stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=waiting.completionToken,
                results=[pb.OperationResult(success=pb.OperationResultSuccess())],
                entityState=wrappers_pb2.StringValue(value="1"),
            )
        )
        got = stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@l1", includeState=True))
        assert got.exists and got.entity.serializedState.value == "1"
        assert not got.entity.HasField("lockedBy")
    finally:
        stream.close()


def test_a_filter_version_of_nothing_means_unversioned_work() -> None:
    only_unversioned = {"orch": frozenset({""})}
    assert matches("orch", None, only_unversioned) and matches("orch", "", only_unversioned)
    assert not matches("orch", "2", only_unversioned)
    assert matches("orch", "7", {"orch": frozenset()})  # no versions named: every version
    assert not matches("other", None, {"orch": frozenset()})
    assert matches("anything", "1", None)  # no filter at all


def lock_request(owner: str, section: str, *entity_ids: str) -> Any:
    return pb.OrchestratorAction(
        id=1,
        sendEntityMessage=pb.SendEntityMessageAction(
            entityLockRequested=pb.EntityLockRequestedEvent(
                criticalSectionId=section,
                lockSet=list(entity_ids),
                parentInstanceId=wrappers_pb2.StringValue(value=owner),
            )
        ),
    )


def test_a_lock_held_elsewhere_is_granted_when_its_holder_finishes(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "first-holder")
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="first-holder",
                completionToken=stream.next().completionToken,
                actions=[lock_request("first-holder", "cs-a", "@ctr@shared")],
            )
        )
        granted_first = stream.next()
        assert granted_first.orchestratorRequest.newEvents[-1].entityLockGranted.criticalSectionId == "cs-a"
        start(stub, "second-holder")
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="second-holder",
                completionToken=stream.next().completionToken,
                actions=[lock_request("second-holder", "cs-b", "@ctr@shared")],
            )
        )
        assert stream.empty_for(0.3)  # the second waits: the entity is held
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="first-holder",
                completionToken=granted_first.completionToken,
                actions=[complete_action()],
            )
        )
        granted_second = stream.next()
        assert granted_second.orchestratorRequest.instanceId == "second-holder"
        assert granted_second.orchestratorRequest.newEvents[-1].entityLockGranted.criticalSectionId == "cs-b"
        got = stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@shared"))
        assert got.entity.lockedBy.value == "cs-b"
    finally:
        stream.close()


def entity_call(request_id: str, caller: str, entity_id: str) -> Any:
    return pb.OrchestratorAction(
        id=1,
        sendEntityMessage=pb.SendEntityMessageAction(
            entityOperationCalled=pb.EntityOperationCalledEvent(
                requestId=request_id,
                operation="get",
                parentInstanceId=wrappers_pb2.StringValue(value=caller),
                targetInstanceId=wrappers_pb2.StringValue(value=entity_id),
            )
        ),
    )


def test_entity_replies_to_an_execution_that_continued_as_new_are_dropped(stub: Any) -> None:
    orchestrations = orchestrations_of(stub, "orch")
    entity_work = entities_of(stub, "ctr")
    try:
        start(stub, "caller-c")
        step = orchestrations.next()
        calls = [entity_call("ok-1", "caller-c", "@ctr@ok"), entity_call("bad-1", "caller-c", "@ctr@bad")]
        calls[1].id = 2
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="caller-c", completionToken=step.completionToken, actions=calls
            )
        )
        batches = {b.entityRequestV2.instanceId: b for b in (entity_work.next(), entity_work.next())}
        stub.RaiseEvent(pb.RaiseEventRequest(instanceId="caller-c", name="restart"))
        continued = pb.OrchestratorAction(
            id=-1,
            completeOrchestration=pb.CompleteOrchestrationAction(
                orchestrationStatus=pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW,
                result=wrappers_pb2.StringValue(value="2"),
            ),
        )
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="caller-c",
                completionToken=orchestrations.next().completionToken,
                actions=[continued],
            )
        )
        stub.CompleteOrchestratorTask(  # the new execution's first step
            pb.OrchestratorResponse(
                instanceId="caller-c", completionToken=orchestrations.next().completionToken
            )
        )
        stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=batches["@ctr@ok"].completionToken,
                entityState=wrappers_pb2.StringValue(value="1"),
                results=[pb.OperationResult(success=pb.OperationResultSuccess())],
            )
        )
        stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=batches["@ctr@bad"].completionToken,
                failureDetails=pb.TaskFailureDetails(errorType="Crash", errorMessage="worker crashed"),
            )
        )
        stub.RaiseEvent(pb.RaiseEventRequest(instanceId="caller-c", name="next"))
        kinds = [e.WhichOneof("eventType") for e in orchestrations.next().orchestratorRequest.newEvents]
    finally:
        orchestrations.close()
        entity_work.close()
    assert kinds == ["orchestratorStarted", "eventRaised"]  # neither reply reached the new execution


def test_an_orchestration_an_entity_starts_for_later_waits_for_its_time(stub: Any) -> None:
    orchestrations = orchestrations_of(stub, "later")
    entity_work = entities_of(stub, "ctr")
    try:
        stub.SignalEntity(pb.SignalEntityRequest(instanceId="@ctr@starter", name="go", requestId="s1"))
        batch = entity_work.next()
        at = timestamp_pb2.Timestamp()
        at.FromNanoseconds(time.time_ns() + 1_500_000_000)
        start_later = pb.OperationAction(
            id=1,
            startNewOrchestration=pb.StartNewOrchestrationAction(
                instanceId="later-1",
                name="later",
                version=wrappers_pb2.StringValue(value="2"),
                scheduledTime=at,
            ),
        )
        stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=batch.completionToken,
                results=[pb.OperationResult(success=pb.OperationResultSuccess())],
                actions=[start_later],
            )
        )
        assert status(stub, "later-1") == pb.ORCHESTRATION_STATUS_PENDING
        assert orchestrations.empty_for(0.7)
        first = orchestrations.next()
    finally:
        orchestrations.close()
        entity_work.close()
    assert first.orchestratorRequest.instanceId == "later-1" and time.time_ns() >= at.ToNanoseconds()
    [started] = [e for e in first.orchestratorRequest.newEvents if e.HasField("executionStarted")]
    assert started.executionStarted.version.value == "2"


def test_an_entity_filter_looks_past_entities_of_other_names(stub: Any) -> None:
    stub.SignalEntity(pb.SignalEntityRequest(instanceId="@other@x", name="add", requestId="o1"))
    stub.SignalEntity(pb.SignalEntityRequest(instanceId="@ctr@y", name="add", requestId="c1"))
    stream = entities_of(stub, "ctr")
    try:
        assert stream.next().entityRequestV2.instanceId == "@ctr@y"  # queued second, handed out
    finally:
        stream.close()


def test_a_waiting_lock_request_of_an_owner_that_ended_is_dropped(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "holder")
        respond(stub, "holder", stream.next(), lock_request("holder", "cs-h", "@ctr@contested"))
        granted = stream.next()
        start(stub, "quitter")
        respond(stub, "quitter", stream.next(), lock_request("quitter", "cs-q", "@ctr@contested"))
        stub.TerminateInstance(pb.TerminateRequest(instanceId="quitter"))
        ending = stream.next()  # the quitter ends while its request still waits
        respond(
            stub,
            "quitter",
            ending,
            pb.OrchestratorAction(
                id=-1,
                completeOrchestration=pb.CompleteOrchestrationAction(
                    orchestrationStatus=pb.ORCHESTRATION_STATUS_TERMINATED
                ),
            ),
        )
        respond(stub, "holder", granted, complete_action())  # releasing: the quitter's request goes
        assert stream.empty_for(0.3)  # nobody is granted the lock
    finally:
        stream.close()
    assert status(stub, "holder") == pb.ORCHESTRATION_STATUS_COMPLETED
    assert not stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@contested")).exists  # unlocked, unused
