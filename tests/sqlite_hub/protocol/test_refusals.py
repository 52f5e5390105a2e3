"""What the SQLite hub says when it refuses: the gRPC status code and a detail a person can act on.

Clients show the detail (durabletask raises it in its exceptions; devhost's management API
puts it in problem details), so each refusal names what was wrong and with what.
"""

from __future__ import annotations

import logging
import pathlib
import re
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from google.protobuf import wrappers_pb2

from devhost.sqlite_hub import SqliteSidecar
from tests.sqlite_hub.protocol.raw import RawStream, start


def refusal(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The code and detail of the error that `call()` ends in."""
    with pytest.raises(grpc.RpcError) as refused:
        call()
    error: Any = refused.value
    return error.code(), error.details()


def test_each_refusal_has_its_code_and_says_why(stub: Any) -> None:
    start(stub, "ref-1")
    stream = RawStream(stub)
    try:
        item = stream.next()
        bogus = pb.OrchestratorResponse(instanceId="ref-1", completionToken="o-bogus")
        too_many = pb.InstanceBatch(instanceIds=[f"i{n}" for n in range(501)])
        refusals = {
            "start twice": (
                lambda: stub.StartInstance(pb.CreateInstanceRequest(instanceId="ref-1", name="orch")),
                grpc.StatusCode.ALREADY_EXISTS,
                "Orchestration instance 'ref-1' already exists",
            ),
            "event to nobody": (
                lambda: stub.RaiseEvent(pb.RaiseEventRequest(instanceId="ref-none", name="e")),
                grpc.StatusCode.NOT_FOUND,
                "Orchestration instance 'ref-none' not found",
            ),
            "history of nobody": (
                lambda: list(
                    stub.StreamInstanceHistory(pb.StreamInstanceHistoryRequest(instanceId="ref-none"))
                ),
                grpc.StatusCode.NOT_FOUND,
                "Orchestration instance 'ref-none' not found",
            ),
            "unknown token": (
                lambda: stub.CompleteOrchestratorTask(bogus),
                grpc.StatusCode.FAILED_PRECONDITION,
                "no current orchestration lease for completion token 'o-bogus'",
            ),
            "batch too large": (
                lambda: stub.SkipGracefulOrchestrationTerminations(
                    pb.SkipGracefulOrchestrationTerminationsRequest(instanceBatch=too_many)
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "at most 500 instances at a time",
            ),
            "not complete in time": (
                lambda: stub.WaitForInstanceCompletion(
                    pb.GetInstanceRequest(instanceId="ref-1"), timeout=0.5
                ),
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "Timed out waiting for instance 'ref-1' to complete",
            ),
        }
        for case, (call, code, detail) in refusals.items():
            assert refusal(call) == (code, detail), case
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(instanceId="ref-1", completionToken=item.completionToken)
        )
    finally:
        stream.close()
    start(stub, "ref-2")  # never handed out: it stays pending
    never_started = refusal(
        lambda: stub.WaitForInstanceStart(pb.GetInstanceRequest(instanceId="ref-2"), timeout=0.5)
    )
    assert never_started == (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "Timed out waiting for instance 'ref-2' to start",
    )


def test_a_trace_context_given_at_start_reaches_the_first_step(stub: Any) -> None:
    trace = pb.TraceContext(traceParent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    stub.StartInstance(pb.CreateInstanceRequest(instanceId="ref-3", name="orch", parentTraceContext=trace))
    start(stub, "ref-4")
    stream = RawStream(stub)
    try:
        begun = {}
        for _ in range(2):
            item = stream.next()
            [event] = [e for e in item.orchestratorRequest.newEvents if e.HasField("executionStarted")]
            begun[item.orchestratorRequest.instanceId] = event.executionStarted
    finally:
        stream.close()
    assert begun["ref-3"].parentTraceContext == trace
    assert not begun["ref-4"].HasField("parentTraceContext")


def test_an_entity_query_that_fits_one_page_has_no_continuation(stub: Any) -> None:
    for key in ("a", "b"):
        stub.SignalEntity(pb.SignalEntityRequest(instanceId=f"@pager@{key}", name="add", requestId=key))
    query = pb.EntityQuery(
        instanceIdStartsWith=wrappers_pb2.StringValue(value="@pager@"),
        includeTransient=True,
        pageSize=wrappers_pb2.Int32Value(value=2),
    )
    first = stub.QueryEntities(pb.QueryEntitiesRequest(query=query))
    assert [e.instanceId for e in first.entities] == ["@pager@a", "@pager@b"]
    assert not first.HasField("continuationToken")
    query.pageSize.value = 1
    paged = stub.QueryEntities(pb.QueryEntitiesRequest(query=query))
    assert [e.instanceId for e in paged.entities] == ["@pager@a"]
    assert paged.continuationToken.value == "@pager@a"


def test_a_sidecar_starts_once_and_logs_each_worker_stream(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devhost.sqlite_hub")
    hub = SqliteSidecar(tmp_path / "taskhub.db")
    hub.start()
    try:
        with pytest.raises(RuntimeError, match=r"^sidecar already started$"):
            hub.start()
        with grpc.insecure_channel(hub.address) as channel:
            own = stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
            stream = RawStream(own)
            start(own, "ref-5")
            stream.next()
            stream.close()
    finally:
        hub.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert any(re.fullmatch(r"worker stream \d+ connected", message) for message in messages), messages
