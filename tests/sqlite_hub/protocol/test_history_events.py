"""What the SQLite hub writes into an instance's history, and the edges of its lifecycle.

The history is what the Durable Task Scheduler dashboard and ``get_orchestration_history``
show: each step's events carry the step's time, results, failures, tags and the reasons
given to suspend and resume. Also here: an instance whose history would outgrow the
hub's limit fails instead of looping, a reply to work of an execution that has continued
as new is dropped, and terminating a finished instance changes nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from devhost.sqlite_hub import SqliteSidecar
from tests.sqlite_hub.protocol.raw import (
    RawStream,
    complete_action,
    complete_activity,
    respond,
    start,
    status,
)


def history(stub: Any, iid: str) -> list[Any]:
    return [
        event
        for chunk in stub.StreamInstanceHistory(pb.StreamInstanceHistoryRequest(instanceId=iid))
        for event in chunk.events
    ]


def of_kind(events: list[Any], kind: str) -> list[Any]:
    return [event for event in events if event.WhichOneof("eventType") == kind]


def state(stub: Any, iid: str) -> Any:
    return stub.GetInstance(
        pb.GetInstanceRequest(instanceId=iid, getInputsAndOutputs=True)
    ).orchestrationState


def raise_event(stub: Any, iid: str, name: str) -> None:
    stub.RaiseEvent(
        pb.RaiseEventRequest(instanceId=iid, name=name, input=wrappers_pb2.StringValue(value="1"))
    )


def test_a_step_stamps_its_events_with_its_own_time_and_keeps_results_and_tags(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "hist-1")
        first = stream.next()
        tagged = pb.OrchestratorAction(
            id=1,
            scheduleTask=pb.ScheduleTaskAction(
                name="lookup", input=wrappers_pb2.StringValue(value='"q"'), tags={"tenant": "t-7"}
            ),
        )
        far = pb.OrchestratorAction(
            id=2, createTimer=pb.CreateTimerAction(fireAt=Timestamp(seconds=4_000_000_000))
        )
        respond(stub, "hist-1", first, tagged, far)
        scheduled_at = state(stub, "hist-1").lastUpdatedTimestamp
        activity = stream.next()
        assert dict(activity.activityRequest.tags) == {"tenant": "t-7"}
        complete_activity(stub, activity, '"found"')
        second = stream.next()
        respond(stub, "hist-1", second, complete_action('"all done"'))
    finally:
        stream.close()
    done = state(stub, "hist-1")
    events = history(stub, "hist-1")
    [scheduled] = of_kind(events, "taskScheduled")
    assert scheduled.eventId == 1 and scheduled.taskScheduled.name == "lookup"
    assert dict(scheduled.taskScheduled.tags) == {"tenant": "t-7"}
    [timer] = of_kind(events, "timerCreated")
    # Both carry the time of the step that created them.
    assert scheduled.timestamp == timer.timestamp == scheduled_at
    [completed] = of_kind(events, "executionCompleted")
    assert completed.executionCompleted.result.value == '"all done"'
    assert completed.executionCompleted.orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert completed.timestamp == done.completedTimestamp == done.lastUpdatedTimestamp
    assert of_kind(events, "orchestratorCompleted")[-1].timestamp == done.completedTimestamp


def test_a_failed_orchestration_keeps_its_failure_in_the_history(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "hist-2")
        item = stream.next()
        failure = pb.TaskFailureDetails(
            errorType="ValueError", errorMessage="no such city", isNonRetriable=True
        )
        respond(
            stub,
            "hist-2",
            item,
            pb.OrchestratorAction(
                id=-1,
                completeOrchestration=pb.CompleteOrchestrationAction(
                    orchestrationStatus=pb.ORCHESTRATION_STATUS_FAILED, failureDetails=failure
                ),
            ),
        )
    finally:
        stream.close()
    assert status(stub, "hist-2") == pb.ORCHESTRATION_STATUS_FAILED
    [completed] = of_kind(history(stub, "hist-2"), "executionCompleted")
    assert completed.executionCompleted.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert completed.executionCompleted.failureDetails.errorType == "ValueError"
    assert completed.executionCompleted.failureDetails.errorMessage == "no such city"


def test_suspend_and_resume_reasons_reach_the_history(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "hist-3")
        respond(stub, "hist-3", stream.next())
        stub.SuspendInstance(
            pb.SuspendRequest(instanceId="hist-3", reason=wrappers_pb2.StringValue(value="maintenance"))
        )
        respond(stub, "hist-3", stream.next())
        assert status(stub, "hist-3") == pb.ORCHESTRATION_STATUS_SUSPENDED
        stub.ResumeInstance(
            pb.ResumeRequest(instanceId="hist-3", reason=wrappers_pb2.StringValue(value="done"))
        )
        respond(stub, "hist-3", stream.next(), complete_action())
    finally:
        stream.close()
    events = history(stub, "hist-3")
    [suspended] = of_kind(events, "executionSuspended")
    [resumed] = of_kind(events, "executionResumed")
    assert suspended.executionSuspended.input.value == "maintenance"
    assert resumed.executionResumed.input.value == "done"


def test_terminating_a_finished_instance_changes_nothing(stub: Any, sidecar: SqliteSidecar) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "hist-4")
        respond(stub, "hist-4", stream.next(), complete_action('"kept"'))
    finally:
        stream.close()
    before = state(stub, "hist-4")
    stub.TerminateInstance(
        pb.TerminateRequest(instanceId="hist-4", output=wrappers_pb2.StringValue(value='"late"'))
    )
    after = state(stub, "hist-4")
    assert after.orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert after.output.value == '"kept"' and after.lastUpdatedTimestamp == before.lastUpdatedTimestamp
    with sidecar.storage.read() as conn:  # nothing queued that a worker would be handed
        assert conn.execute("SELECT COUNT(*) FROM inbox WHERE instance_id = 'hist-4'").fetchone()[0] == 0


def test_a_history_past_the_limit_fails_the_instance_instead_of_looping(
    stub: Any, sidecar: SqliteSidecar
) -> None:
    assert sidecar.hub is not None
    sidecar.hub.max_history = 12
    stream = RawStream(stub)
    refused: grpc.RpcError | None = None
    try:
        start(stub, "hist-5")
        respond(stub, "hist-5", stream.next())
        for step in range(12):
            raise_event(stub, "hist-5", f"e{step}")
            item = stream.next()
            try:
                respond(stub, "hist-5", item)
            except grpc.RpcError as exc:
                refused = exc
                break
        assert refused is not None, "the history never reached the limit"
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        raise_event(stub, "hist-5", "after")  # a failed instance takes no more events
        assert stream.empty_for(0.5)
    finally:
        stream.close()
    failed = state(stub, "hist-5")
    assert failed.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert failed.failureDetails.errorType == "HistoryTooLarge"
    assert "would exceed maximum history size" in failed.failureDetails.errorMessage
    assert failed.failureDetails.isNonRetriable
    assert failed.HasField("completedTimestamp")
    assert len(history(stub, "hist-5")) <= 12


def test_a_reply_to_work_of_an_earlier_execution_is_dropped(
    stub: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Like Azure Durable Task Scheduler: the new execution never sees the old one's results."""
    caplog.set_level(logging.INFO, logger="devhost.sqlite_hub")
    stream = RawStream(stub)
    try:
        start(stub, "hist-6")
        respond(
            stub,
            "hist-6",
            stream.next(),
            pb.OrchestratorAction(id=1, scheduleTask=pb.ScheduleTaskAction(name="slow")),
        )
        activity = stream.next()
        raise_event(stub, "hist-6", "restart")
        continued = pb.OrchestratorAction(
            id=-1,
            completeOrchestration=pb.CompleteOrchestrationAction(
                orchestrationStatus=pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW,
                result=wrappers_pb2.StringValue(value="2"),
            ),
        )
        first_execution = state(stub, "hist-6").executionId.value
        respond(stub, "hist-6", stream.next(), continued)
        started = stream.next()  # the new execution's first step, under its own id
        second_execution = state(stub, "hist-6").executionId.value
        [begin] = [e for e in started.orchestratorRequest.newEvents if e.HasField("executionStarted")]
        assert begin.executionStarted.orchestrationInstance.executionId.value == second_execution
        assert second_execution not in ("", first_execution)
        respond(stub, "hist-6", started)
        complete_activity(stub, activity, '"stale"')
        raise_event(stub, "hist-6", "next")
        step = stream.next()
        kinds = [event.WhichOneof("eventType") for event in step.orchestratorRequest.newEvents]
        assert kinds == ["orchestratorStarted", "eventRaised"]
        respond(stub, "hist-6", step, complete_action())
    finally:
        stream.close()
    assert of_kind(history(stub, "hist-6"), "taskCompleted") == []
    dropped = f"dropping taskCompleted for 'hist-6': execution {first_execution} is gone"
    assert dropped in [record.getMessage() for record in caplog.records]


def test_a_sub_orchestration_gets_its_parent_and_trace_context_only_when_given(stub: Any) -> None:
    trace = pb.TraceContext(traceParent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    children = {
        "hist-7-traced": pb.CreateSubOrchestrationAction(
            instanceId="hist-7-traced", name="child", parentTraceContext=trace
        ),
        "hist-7-plain": pb.CreateSubOrchestrationAction(instanceId="hist-7-plain", name="child"),
    }
    stream = RawStream(stub)
    try:
        start(stub, "hist-7")
        respond(
            stub,
            "hist-7",
            stream.next(),
            *(
                pb.OrchestratorAction(id=n, createSubOrchestration=a)
                for n, a in enumerate(children.values(), 1)
            ),
        )
        begun = {}
        for _ in children:
            item = stream.next()
            [event] = [e for e in item.orchestratorRequest.newEvents if e.HasField("executionStarted")]
            begun[item.orchestratorRequest.instanceId] = event.executionStarted
    finally:
        stream.close()
    assert begun["hist-7-traced"].parentTraceContext == trace
    assert not begun["hist-7-plain"].HasField("parentTraceContext")
    for started in begun.values():
        assert started.parentInstance.orchestrationInstance.instanceId == "hist-7"


def test_waiting_for_an_unknown_instance_says_it_does_not_exist(stub: Any) -> None:
    for wait in (stub.WaitForInstanceCompletion, stub.WaitForInstanceStart):
        response = wait(pb.GetInstanceRequest(instanceId="hist-missing"), timeout=1.0)
        assert not response.exists


@pytest.mark.parametrize("seconds", [7.0, 42.5])
def test_the_lease_length_reaches_the_hub(tmp_path: Any, seconds: float) -> None:
    hub = SqliteSidecar(tmp_path / "taskhub.db")
    hub.lease_seconds = seconds
    hub.start()
    try:
        assert hub.hub is not None and hub.hub.leases.duration == seconds
    finally:
        hub.stop()


def test_versions_reach_activities_and_sub_orchestrations(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "hist-8")
        respond(
            stub,
            "hist-8",
            stream.next(),
            pb.OrchestratorAction(
                id=1,
                scheduleTask=pb.ScheduleTaskAction(name="act", version=wrappers_pb2.StringValue(value="1.2")),
            ),
            pb.OrchestratorAction(
                id=2,
                createSubOrchestration=pb.CreateSubOrchestrationAction(
                    instanceId="hist-8-child", name="child", version=wrappers_pb2.StringValue(value="3")
                ),
            ),
        )
        handed = {item.WhichOneof("request"): item for item in (stream.next(), stream.next())}
    finally:
        stream.close()
    assert handed["activityRequest"].activityRequest.version.value == "1.2"
    [started] = [
        e
        for e in handed["orchestratorRequest"].orchestratorRequest.newEvents
        if e.HasField("executionStarted")
    ]
    assert started.executionStarted.version.value == "3"
    [scheduled] = of_kind(history(stub, "hist-8"), "taskScheduled")
    assert scheduled.taskScheduled.version.value == "1.2"


def test_an_orchestration_terminates_another_with_its_reason(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "hist-9-target")
        respond(stub, "hist-9-target", stream.next())  # it waits for something
        start(stub, "hist-9")
        terminate = pb.OrchestratorAction(
            id=1,
            terminateOrchestration=pb.TerminateOrchestrationAction(
                instanceId="hist-9-target", reason=wrappers_pb2.StringValue(value='"enough"')
            ),
        )
        respond(stub, "hist-9", stream.next(), terminate)
        ending = stream.next()
    finally:
        stream.close()
    assert ending.orchestratorRequest.instanceId == "hist-9-target"
    *_, last = ending.orchestratorRequest.newEvents
    assert last.executionTerminated.input.value == '"enough"'  # the worker ends it with this output


def test_a_child_terminated_without_running_fails_its_parent_step(stub: Any) -> None:
    stream = RawStream(stub)
    try:
        start(stub, "hist-11")
        child = pb.OrchestratorAction(
            id=2, createSubOrchestration=pb.CreateSubOrchestrationAction(instanceId="hist-11-child", name="c")
        )
        respond(stub, "hist-11", stream.next(), child)
        assert stream.next().orchestratorRequest.instanceId == "hist-11-child"  # in flight, never completed
        skipped = stub.SkipGracefulOrchestrationTerminations(
            pb.SkipGracefulOrchestrationTerminationsRequest(
                instanceBatch=pb.InstanceBatch(instanceIds=["hist-11-child"])
            )
        )
        assert list(skipped.unterminatedInstanceIds) == []
        parent_step = stream.next()
    finally:
        stream.close()
    assert parent_step.orchestratorRequest.instanceId == "hist-11"
    events = parent_step.orchestratorRequest.newEvents
    [failed] = [
        e.subOrchestrationInstanceFailed for e in events if e.HasField("subOrchestrationInstanceFailed")
    ]
    assert failed.taskScheduledId == 2
    assert (failed.failureDetails.errorType, failed.failureDetails.errorMessage) == (
        "OrchestrationTerminated",
        "Sub-orchestration 'hist-11-child' was terminated",
    )


def test_an_action_the_hub_cannot_apply_fails_the_orchestration_and_says_why(
    stub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("the target is in a bad way")

    monkeypatch.setattr("devhost.sqlite_hub.steps.instances.terminate", broken)
    stream = RawStream(stub)
    try:
        start(stub, "hist-10")
        terminate = pb.OrchestratorAction(
            id=1, terminateOrchestration=pb.TerminateOrchestrationAction(instanceId="elsewhere")
        )
        respond(stub, "hist-10", stream.next(), terminate)
    finally:
        stream.close()
    failed = state(stub, "hist-10")
    assert failed.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert failed.failureDetails.errorType == "builtins.ValueError"
    assert failed.failureDetails.errorMessage == "the target is in a bad way"
    assert failed.failureDetails.isNonRetriable


def test_a_scheduled_start_hands_nothing_out_before_its_time(stub: Any) -> None:
    at = Timestamp()
    at.FromNanoseconds(time.time_ns() + 1_500_000_000)
    stub.StartInstance(
        pb.CreateInstanceRequest(instanceId="hist-12", name="orch", scheduledStartTimestamp=at)
    )
    stream = RawStream(stub)
    try:
        assert stream.empty_for(0.7)  # not one event of it is handed out early
        assert status(stub, "hist-12") == pb.ORCHESTRATION_STATUS_PENDING
        first = stream.next()
    finally:
        stream.close()
    assert time.time_ns() >= at.ToNanoseconds()
    kinds = [event.WhichOneof("eventType") for event in first.orchestratorRequest.newEvents]
    assert kinds == ["orchestratorStarted", "executionStarted"]
