"""Long-polling GetEntity / GetInstance (x-durable-agent-wait-ms, x-durable-agent-if-changed-since).

Assertions are on what happened (the answer carries the change; the hub's count of how
each wait ended), not on tight wall-clock bounds. The only time bound is a lower one:
a wait that times out cannot answer before its wait has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.testing import create_test_backend
from google.protobuf import wrappers_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from devhost.sqlite_hub import SqliteSidecar
from devhost.sqlite_hub.longpoll import SINCE_HEADER, WAIT_HEADER, LongPoll
from tests.sqlite_hub.conftest import free_port
from tests.sqlite_hub.protocol.raw import RawStream, start

ENTITY = "@counter@lp"


def headers(wait_ms: int, since: Any) -> tuple[tuple[str, str], ...]:
    return ((WAIT_HEADER, str(wait_ms)), (SINCE_HEADER, since.ToJsonString()))


def set_entity(stub: Any, stream: RawStream, value: str) -> None:
    stub.SignalEntity(pb.SignalEntityRequest(instanceId=ENTITY, name="set", requestId=value))
    item = stream.next()
    stub.CompleteEntityTask(
        pb.EntityBatchResult(
            completionToken=item.completionToken,
            results=[pb.OperationResult(success=pb.OperationResultSuccess())],
            entityState=wrappers_pb2.StringValue(value=value),
        )
    )


def get_entity(stub: Any, **kwargs: Any) -> Any:
    return stub.GetEntity(pb.GetEntityRequest(instanceId=ENTITY, includeState=True), **kwargs)


def wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def poll(sidecar: SqliteSidecar) -> LongPoll:
    assert sidecar.hub is not None
    return sidecar.hub.long_poll


def test_get_entity_answers_when_the_entity_changes(stub: Any, sidecar: SqliteSidecar) -> None:
    stream = RawStream(stub)
    try:
        set_entity(stub, stream, "1")
        seen = get_entity(stub).entity.lastModifiedTime
        pending = stub.GetEntity.future(
            pb.GetEntityRequest(instanceId=ENTITY, includeState=True), metadata=headers(2000, seen)
        )
        wait_for(lambda: poll(sidecar).waiting == 1)  # it is holding the answer
        set_entity(stub, stream, "2")
        answer = pending.result(timeout=30)
    finally:
        stream.close()
    assert answer.entity.serializedState.value == "2"  # answered after the change, with it
    assert answer.entity.lastModifiedTime.ToDatetime() > seen.ToDatetime()
    assert poll(sidecar).outcomes == {"changed": 1}  # woken by the change, not by its timeout


def test_get_entity_answers_at_the_timeout_when_nothing_changes(stub: Any, sidecar: SqliteSidecar) -> None:
    stream = RawStream(stub)
    try:
        set_entity(stub, stream, "1")
    finally:
        stream.close()
    seen = get_entity(stub).entity.lastModifiedTime
    started = time.monotonic()
    answer = get_entity(stub, metadata=headers(300, seen))
    assert time.monotonic() - started >= 0.3
    assert answer.entity.serializedState.value == "1" and answer.entity.lastModifiedTime == seen
    assert poll(sidecar).outcomes == {"timeout": 1}


def test_without_headers_or_with_an_older_time_the_answer_is_immediate(
    stub: Any, sidecar: SqliteSidecar
) -> None:
    stream = RawStream(stub)
    try:
        set_entity(stub, stream, "1")
        older = get_entity(stub).entity.lastModifiedTime
        set_entity(stub, stream, "2")
    finally:
        stream.close()
    assert get_entity(stub).entity.serializedState.value == "2"
    assert get_entity(stub, metadata=((WAIT_HEADER, "2000"),)).entity.serializedState.value == "2"
    assert get_entity(stub, metadata=headers(2000, older)).entity.serializedState.value == "2"
    assert poll(sidecar).outcomes == {"changed": 1}


def test_a_wait_for_a_missing_entity_ends_when_it_is_created_or_at_the_timeout(
    stub: Any, sidecar: SqliteSidecar
) -> None:
    epoch = Timestamp()  # "anything newer than the epoch": wait for it to exist
    started = time.monotonic()
    missing = stub.GetEntity(pb.GetEntityRequest(instanceId="@counter@none"), metadata=headers(200, epoch))
    assert not missing.exists and time.monotonic() - started >= 0.2
    assert poll(sidecar).outcomes == {"timeout": 1}
    pending = stub.GetEntity.future(
        pb.GetEntityRequest(instanceId="@counter@new"), metadata=headers(2000, epoch)
    )
    wait_for(lambda: poll(sidecar).waiting == 1)
    stub.SignalEntity(pb.SignalEntityRequest(instanceId="@counter@new", name="add", requestId="r"))
    created = pending.result(timeout=30)
    assert created.exists and created.entity.backlogQueueSize == 1  # answered by the signal
    assert poll(sidecar).outcomes == {"timeout": 1, "changed": 1}


def test_bad_headers_are_invalid_arguments(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as bad_wait:
        get_entity(stub, metadata=((WAIT_HEADER, "soon"), (SINCE_HEADER, "2026-01-01T00:00:00Z")))
    assert bad_wait.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as bad_since:
        get_entity(stub, metadata=((WAIT_HEADER, "100"), (SINCE_HEADER, "yesterday")))
    assert bad_since.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_instance_answers_when_the_instance_changes(stub: Any, sidecar: SqliteSidecar) -> None:
    start(stub, "lp-1")
    seen = stub.GetInstance(pb.GetInstanceRequest(instanceId="lp-1")).orchestrationState
    pending = stub.GetInstance.future(
        pb.GetInstanceRequest(instanceId="lp-1"), metadata=headers(2000, seen.lastUpdatedTimestamp)
    )
    wait_for(lambda: poll(sidecar).waiting == 1)
    stub.RaiseEvent(pb.RaiseEventRequest(instanceId="lp-1", name="go"))
    answer = pending.result(timeout=30).orchestrationState
    assert answer.lastUpdatedTimestamp.ToDatetime() > seen.lastUpdatedTimestamp.ToDatetime()
    assert poll(sidecar).outcomes == {"changed": 1}


def test_two_hundred_waiters_keep_the_hub_responsive(stub: Any, sidecar: SqliteSidecar) -> None:
    poll(sidecar).max_wait = 60.0  # long enough that no waiter times out on a loaded machine
    stream = RawStream(stub)
    try:
        set_entity(stub, stream, "1")
        seen = get_entity(stub).entity.lastModifiedTime
        request = pb.GetEntityRequest(instanceId=ENTITY, includeState=True)
        pending = [stub.GetEntity.future(request, metadata=headers(60_000, seen)) for _ in range(200)]
        wait_for(lambda: poll(sidecar).waiting == 200, timeout=60)
        # With 200 calls held, the hub still starts, hands out and completes other work.
        start(stub, "busy-1")
        item = stream.next()
        assert item.orchestratorRequest.instanceId == "busy-1"
        assert stub.GetInstance(pb.GetInstanceRequest(instanceId="busy-1")).exists
        assert not any(p.done() for p in pending)
        set_entity(stub, stream, "2")
        answers = [p.result(timeout=60) for p in pending]
    finally:
        stream.close()
    assert {a.entity.serializedState.value for a in answers} == {"2"}
    assert poll(sidecar).outcomes == {"changed": 200}
    assert poll(sidecar).waiting == 0


def test_commits_elsewhere_wake_no_waiter(stub: Any, sidecar: SqliteSidecar) -> None:
    poll(sidecar).max_wait = 60.0
    stream = RawStream(stub)
    try:
        set_entity(stub, stream, "1")
        seen = get_entity(stub).entity.lastModifiedTime
        request = pb.GetEntityRequest(instanceId=ENTITY, includeState=True)
        pending = [stub.GetEntity.future(request, metadata=headers(60_000, seen)) for _ in range(50)]
        wait_for(lambda: poll(sidecar).waiting == 50)
        for i in range(20):  # commits about other things (instances that start next century)
            later = Timestamp(seconds=4_000_000_000)
            stub.StartInstance(
                pb.CreateInstanceRequest(instanceId=f"other-{i}", name="orch", scheduledStartTimestamp=later)
            )
            stub.RaiseEvent(pb.RaiseEventRequest(instanceId=f"other-{i}", name="e"))
        assert poll(sidecar).wakeups == 0 and not any(p.done() for p in pending)
        set_entity(stub, stream, "2")
        assert {p.result(timeout=60).entity.serializedState.value for p in pending} == {"2"}
    finally:
        stream.close()
    assert poll(sidecar).wakeups == 50


def test_waiters_beyond_capacity_answer_at_once(stub: Any, sidecar: SqliteSidecar) -> None:
    poll(sidecar).capacity = 2
    stream = RawStream(stub)
    try:
        set_entity(stub, stream, "1")
        seen = get_entity(stub).entity.lastModifiedTime
        request = pb.GetEntityRequest(instanceId=ENTITY, includeState=True)
        held = [stub.GetEntity.future(request, metadata=headers(2000, seen)) for _ in range(2)]
        wait_for(lambda: poll(sidecar).waiting == 2)
        extra = get_entity(stub, metadata=headers(2000, seen))
        assert extra.entity.serializedState.value == "1"
        assert poll(sidecar).outcomes["over_capacity"] == 1
        set_entity(stub, stream, "2")
        assert {p.result(timeout=30).entity.serializedState.value for p in held} == {"2"}
    finally:
        stream.close()


def test_the_reference_ignores_the_headers_and_answers_at_once() -> None:
    port = free_port()
    backend = create_test_backend(port=port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            ref: Any = stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
            start(ref, "ref-1")
            seen = ref.GetInstance(pb.GetInstanceRequest(instanceId="ref-1")).orchestrationState
            answer = ref.GetInstance(
                pb.GetInstanceRequest(instanceId="ref-1"), metadata=headers(2000, seen.lastUpdatedTimestamp)
            )
            assert (
                answer.exists and answer.orchestrationState.lastUpdatedTimestamp == seen.lastUpdatedTimestamp
            )
    finally:
        backend.stop()
        backend.reset()  # type: ignore[no-untyped-call]  # durabletask leaves reset() unannotated
