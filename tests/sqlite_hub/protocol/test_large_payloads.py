"""A 5 MB payload round-trips through the hub and through devhost's proxy.

gRPC's default receive limit is 4 MiB; Azure accepts far more, so devhost must too. Both
directions are covered: the hub receives the payload (StartInstance, SignalEntity and the
completions) and sends it (work items, GetInstance, GetEntity).
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from durabletask.entities import EntityInstanceId
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from google.protobuf import wrappers_pb2

from devhost.grpc_limits import GRPC_OPTIONS, MAX_MESSAGE_BYTES
from devhost.grpc_proxy import SidecarProxy
from devhost.sqlite_hub import SqliteSidecar
from tests.sqlite_hub.app_driver import app_backend
from tests.sqlite_hub.protocol.raw import RawStream

BIG = '"' + "x" * (5 * 1024 * 1024) + '"'  # a 5 MB JSON string


@pytest.fixture(params=["hub", "proxy"])
def big_stub(request: pytest.FixtureRequest, sidecar: SqliteSidecar) -> Iterator[Any]:
    """A stub with large limits on its own channel, to the hub directly or through the proxy."""
    proxy: SidecarProxy | None = None
    address = sidecar.address
    if request.param == "proxy":
        proxy = SidecarProxy(sidecar.address, credentials=None, metadata=())
        proxy.start()
        address = proxy.address
    try:
        with grpc.insecure_channel(address, options=list(GRPC_OPTIONS)) as channel:
            yield stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
    finally:
        if proxy is not None:
            proxy.stop()


def test_limit_is_not_below_azure() -> None:
    assert MAX_MESSAGE_BYTES >= 64 * 1024 * 1024


def test_five_megabyte_orchestration_input_and_output(big_stub: Any) -> None:
    big_stub.StartInstance(
        pb.CreateInstanceRequest(instanceId="big", name="orch", input=wrappers_pb2.StringValue(value=BIG))
    )
    stream = RawStream(big_stub)
    try:
        item = stream.next()
        started = [e for e in item.orchestratorRequest.newEvents if e.HasField("executionStarted")]
        assert started[0].executionStarted.input.value == BIG
        done = pb.OrchestratorAction(
            id=-1,
            completeOrchestration=pb.CompleteOrchestrationAction(
                orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED,
                result=wrappers_pb2.StringValue(value=BIG),
            ),
        )
        big_stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(instanceId="big", completionToken=item.completionToken, actions=[done])
        )
    finally:
        stream.close()
    got = big_stub.GetInstance(pb.GetInstanceRequest(instanceId="big", getInputsAndOutputs=True))
    assert got.orchestrationState.orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert got.orchestrationState.input.value == BIG and got.orchestrationState.output.value == BIG


def test_five_megabyte_entity_state(big_stub: Any) -> None:
    big_stub.SignalEntity(
        pb.SignalEntityRequest(
            instanceId="@blob@k", name="set", requestId="r1", input=wrappers_pb2.StringValue(value=BIG)
        )
    )
    stream = RawStream(big_stub)
    try:
        item = stream.next()
        assert item.entityRequestV2.operationRequests[0].entityOperationSignaled.input.value == BIG
        big_stub.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=item.completionToken,
                results=[pb.OperationResult(success=pb.OperationResultSuccess())],
                entityState=wrappers_pb2.StringValue(value=BIG),
            )
        )
    finally:
        stream.close()
    got = big_stub.GetEntity(pb.GetEntityRequest(instanceId="@blob@k", includeState=True))
    assert got.exists and got.entity.serializedState.value == BIG


def test_five_megabyte_entity_state_through_devhosts_work_item_driver(tmp_path: pathlib.Path) -> None:
    """The app's path: devhost's driver receives the 5 MB operation and sends the 5 MB state."""
    with app_backend("sqlite", tmp_path) as backend:
        client = backend.client
        eid = EntityInstanceId("notes", "big")
        client.signal_entity(eid, "add", "z" * (5 * 1024 * 1024))
        deadline = time.monotonic() + 60
        while (meta := client.get_entity(eid)) is None or not meta._state:
            assert time.monotonic() < deadline, "the 5 MB operation never ran"
            time.sleep(0.05)
        assert json.loads(meta._state) == ["z" * (5 * 1024 * 1024)]
