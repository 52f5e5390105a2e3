"""Runtime status between generations of a continued-as-new instance, on both backends.

The SQLite hub reports RUNNING from the continue-as-new step until the next generation
finishes, as DurableTask.Core (it runs the next generation in the same work item) and
durabletask-go (whose new runtime state already holds executionStarted) do. The
in-memory reference reports PENDING in that window; the test pins both, so a change on
either side is noticed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.testing import create_test_backend
from google.protobuf import wrappers_pb2

from devhost.sqlite_hub import SqliteSidecar
from tests.sqlite_hub.conftest import free_port
from tests.sqlite_hub.protocol.raw import RawStream, complete_action, start


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, sidecar: SqliteSidecar) -> Iterator[tuple[str, Any]]:
    if request.param == "sqlite":
        with grpc.insecure_channel(sidecar.address) as channel:
            yield "sqlite", stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
        return
    port = free_port()
    reference = create_test_backend(port=port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield "memory", stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
    finally:
        reference.stop()
        reference.reset()  # type: ignore[no-untyped-call]  # durabletask leaves reset() unannotated


def continue_as_new(new_input: str) -> Any:
    return pb.OrchestratorAction(
        id=-1,
        completeOrchestration=pb.CompleteOrchestrationAction(
            orchestrationStatus=pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW,
            result=wrappers_pb2.StringValue(value=new_input),
        ),
    )


def state(stub: Any, iid: str) -> Any:
    return stub.GetInstance(
        pb.GetInstanceRequest(instanceId=iid, getInputsAndOutputs=True)
    ).orchestrationState


def test_a_continued_instance_is_running_between_generations(backend: tuple[str, Any]) -> None:
    kind, stub = backend
    start(stub, "can-1")
    stream = RawStream(stub)
    try:
        first = stream.next()
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="can-1", completionToken=first.completionToken, actions=[continue_as_new("2")]
            )
        )
        between = state(stub, "can-1")
        expected = pb.ORCHESTRATION_STATUS_RUNNING if kind == "sqlite" else pb.ORCHESTRATION_STATUS_PENDING
        assert pb.OrchestrationStatus.Name(between.orchestrationStatus) == pb.OrchestrationStatus.Name(
            expected
        )
        assert between.input.value == "2" and not between.HasField("output")
        assert not between.HasField("completedTimestamp")
        # The next generation starts from an empty history with fresh start events.
        second = stream.next()
        assert list(second.orchestratorRequest.pastEvents) == []
        kinds = [e.WhichOneof("eventType") for e in second.orchestratorRequest.newEvents]
        assert kinds == ["orchestratorStarted", "executionStarted"]
        assert state(stub, "can-1").orchestrationStatus == expected  # still, while it runs
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="can-1", completionToken=second.completionToken, actions=[complete_action()]
            )
        )
    finally:
        stream.close()
    done = state(stub, "can-1")
    assert done.orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    history = [
        e.WhichOneof("eventType")
        for chunk in stub.StreamInstanceHistory(pb.StreamInstanceHistoryRequest(instanceId="can-1"))
        for e in chunk.events
    ]
    # Only the last generation, one orchestratorCompleted per orchestratorStarted.
    assert history.count("executionStarted") == 1
    assert history.count("orchestratorStarted") == history.count("orchestratorCompleted") == 1


def test_wait_for_start_returns_at_once_for_a_continued_instance(stub: Any) -> None:
    start(stub, "can-2")
    stream = RawStream(stub)
    try:
        first = stream.next()
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="can-2", completionToken=first.completionToken, actions=[continue_as_new("2")]
            )
        )
        started = stub.WaitForInstanceStart(pb.GetInstanceRequest(instanceId="can-2"), timeout=30)
        assert started.orchestrationState.orchestrationStatus == pb.ORCHESTRATION_STATUS_RUNNING
    finally:
        stream.close()
