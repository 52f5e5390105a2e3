"""Protocol-level tests of leases, abandon, filters, pings and flow control, with raw gRPC.

These pin down behaviour the reference backend does not have (it ignores stale
completions, never pings and ignores declared limits), so they run against the SQLite hub only.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from google.protobuf import wrappers_pb2

from devhost.sqlite_hub import SqliteSidecar
from tests.sqlite_hub.protocol.raw import RawStream, complete_action, complete_activity, start, status


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
    # Leases last 300 s (the fixture's default): a re-delivery can only come from the close.
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


def test_expired_lease_hands_work_out_again(stub: Any, sidecar: SqliteSidecar) -> None:
    assert sidecar.hub is not None
    sidecar.hub.leases.duration = 1.5
    stream = RawStream(stub)
    try:
        before_grant = time.monotonic()
        start(stub, "expire-1")
        item = stream.next()
        again = stream.next(timeout=30)  # handed out again once the 1.5 s lease expired...
        assert time.monotonic() - before_grant >= 1.5  # ...and not before
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
            complete_activity(stub, activity, '"x"')
        complete_activity(stub, again, '"y"')
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


@pytest.mark.parametrize("limit", [1, 2])
def test_declared_concurrency_limits_outstanding_work(stub: Any, limit: int) -> None:
    stream = RawStream(stub, pb.GetWorkItemsRequest(maxConcurrentActivityWorkItems=limit))
    instance_id = f"limit-{limit}"
    try:
        start(stub, instance_id)
        step = stream.next()
        actions = [
            pb.OrchestratorAction(id=i, scheduleTask=pb.ScheduleTaskAction(name=f"work{i}"))
            for i in range(1, limit + 2)
        ]
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId=instance_id, completionToken=step.completionToken, actions=actions
            )
        )
        handed = [stream.next() for _ in range(limit)]
        assert [w.activityRequest.name for w in handed] == [f"work{i}" for i in range(1, limit + 1)]
        assert stream.empty_for(0.3)  # `limit` activities outstanding is the declared limit
        stub.CompleteActivityTask(
            pb.ActivityResponse(instanceId=instance_id, taskId=1, completionToken=handed[0].completionToken)
        )
        kinds = {stream.next().WhichOneof("request") for _ in range(2)}
        assert kinds == {"activityRequest", "orchestratorRequest"}
    finally:
        stream.close()


def test_kinds_take_turns_so_no_backlog_starves_another(stub: Any) -> None:
    """With a backlog of each kind, a stream is handed one of each in turn, not every
    orchestration step first: entity writes (which make replies visible) are not held back
    until a long queue of activities has run."""
    scheduler = RawStream(
        stub,
        pb.GetWorkItemsRequest(
            workItemFilters=pb.WorkItemFilters(orchestrations=[pb.OrchestrationFilter(name="sched")])
        ),
    )
    try:
        start(stub, "turns-sched", name="sched")
        step = scheduler.next()
        schedule = [
            pb.OrchestratorAction(id=i, scheduleTask=pb.ScheduleTaskAction(name="act")) for i in range(1, 6)
        ]
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="turns-sched", completionToken=step.completionToken, actions=schedule
            )
        )
        assert scheduler.empty_for(0.2)  # it may take neither the activities nor other steps
    finally:
        scheduler.close()
    for i in range(5):
        start(stub, f"turns-orch{i}")
        stub.SignalEntity(pb.SignalEntityRequest(instanceId=f"@ctr@turns{i}", name="add", requestId=f"r{i}"))
    stream = RawStream(stub)
    try:
        kinds = [stream.next().WhichOneof("request") for _ in range(15)]
    finally:
        stream.close()
    assert kinds[:3] == ["orchestratorRequest", "activityRequest", "entityRequestV2"]
    assert (
        kinds.count("orchestratorRequest")
        == kinds.count("activityRequest")
        == kinds.count("entityRequestV2")
        == 5
    )
    assert kinds[3:6] == kinds[:3]
