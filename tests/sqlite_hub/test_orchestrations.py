"""Differential tests: orchestration, activity, timer, event and continue-as-new flows."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import pytest
from durabletask.client import OrchestrationStatus
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from google.protobuf import empty_pb2

from tests.sqlite_hub import workflows as wf
from tests.sqlite_hub.conftest import Env

TIMEOUT = 30


def output_of(env: Env, iid: str) -> Any:
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.serialized_output is not None
    return json.loads(state.serialized_output)


def test_hello(env: Env) -> None:
    with grpc.insecure_channel(env.address) as channel:
        stub: Any = stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
        assert stub.Hello(empty_pb2.Empty(), timeout=5) == empty_pb2.Empty()
        # Task hub management is a no-op on both backends.
        assert stub.CreateTaskHub(pb.CreateTaskHubRequest(recreateIfExists=False), timeout=5) is not None
        assert stub.DeleteTaskHub(pb.DeleteTaskHubRequest(), timeout=5) is not None


def test_activity_sequence(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.seq_orch, input=4, instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None
    assert state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == [0, 2, 4, 6]
    assert json.loads(state.serialized_input or "") == 4


def test_fan_out_fan_in(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.fan_orch, input=10, instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == 90


def test_activity_failure_fails_orchestration(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.failing_orch, input="kaput", instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.FAILED
    assert state.failure_details is not None
    assert "kaput" in state.failure_details.message


def test_retry_policy(env: Env) -> None:
    key = env.iid("flaky")
    wf.set_flaky(key, 2)
    iid = env.client.schedule_new_orchestration(wf.retry_orch, input=key, instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == f"ok:{key}"


def test_sub_orchestration(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.parent_orch, input=20, instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == 41
    child = env.client.get_orchestration_state(f"{iid}-child")
    assert child is not None and child.runtime_status == OrchestrationStatus.COMPLETED


def test_sub_orchestration_failure_propagates(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.failing_parent, input="deep", instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    output = json.loads(state.serialized_output or "")
    assert output.startswith("caught:") and "deep" in output


def test_durable_timer(env: Env) -> None:
    started = time.monotonic()
    iid = env.client.schedule_new_orchestration(wf.timer_orch, input=1.0, instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert time.monotonic() - started >= 0.95
    assert json.loads(state.serialized_output or "") >= 0.95


def test_external_events_in_order_and_buffered(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.event_orch, input=["a", "b", "c"], instance_id=env.iid())
    # "c" and "b" arrive before they are awaited (buffered), "a" after start.
    env.client.raise_orchestration_event(iid, "c", data=3)
    env.client.wait_for_orchestration_start(iid, timeout=TIMEOUT)
    env.client.raise_orchestration_event(iid, "b", data=2)
    env.client.raise_orchestration_event(iid, "a", data=1)
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == [1, 2, 3]


def test_burst_of_events_none_lost(env: Env) -> None:
    names = [f"e{i}" for i in range(25)]
    iid = env.client.schedule_new_orchestration(wf.event_orch, input=names, instance_id=env.iid())
    for i, name in enumerate(names):  # many arrive while a step is in flight
        env.client.raise_orchestration_event(iid, name, data=i)
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == list(range(25))


def test_event_or_timeout(env: Env) -> None:
    fast = env.client.schedule_new_orchestration(wf.event_or_timeout, input=30, instance_id=env.iid())
    slow = env.client.schedule_new_orchestration(wf.event_or_timeout, input=0.5, instance_id=env.iid())
    env.client.wait_for_orchestration_start(fast, timeout=TIMEOUT)
    env.client.raise_orchestration_event(fast, "approve", data=True)
    assert output_of(env, fast) == "approved"
    assert output_of(env, slow) == "timed out"


def test_send_event_between_orchestrations(env: Env) -> None:
    target = env.client.schedule_new_orchestration(
        wf.event_orch, input=["ping"], instance_id=env.iid("target")
    )
    env.client.wait_for_orchestration_start(target, timeout=TIMEOUT)
    sender = env.client.schedule_new_orchestration(
        wf.sender_orch, input=target, instance_id=env.iid("sender")
    )
    state = env.client.wait_for_orchestration_completion(target, timeout=TIMEOUT)
    assert state is not None and json.loads(state.serialized_output or "") == ["from-sender"]
    assert env.client.wait_for_orchestration_completion(sender, timeout=TIMEOUT) is not None


def test_continue_as_new(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(
        wf.can_orch, input={"count": 0, "limit": 5}, instance_id=env.iid()
    )
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == 5
    assert json.loads(state.serialized_input or "") == {"count": 5, "limit": 5}
    # History holds only the last execution.
    history = env.client.get_orchestration_history(iid)
    assert sum(1 for e in history if type(e).__name__ == "ExecutionStartedEvent") == 1


def test_continue_as_new_with_events_none_lost(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(
        wf.can_events_orch, input={"acc": [], "limit": 12}, instance_id=env.iid()
    )
    for i in range(12):  # raised while the orchestration is mid-step or continuing as new
        env.client.raise_orchestration_event(iid, "add", data=i)
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == list(range(12))


def test_custom_status(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.custom_status_orch, instance_id=env.iid())
    deadline = time.monotonic() + TIMEOUT
    while True:
        state = env.client.get_orchestration_state(iid)
        if state is not None and state.serialized_custom_status:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert json.loads(state.serialized_custom_status) == {"stage": 1}
    env.client.raise_orchestration_event(iid, "next")
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and json.loads(state.serialized_custom_status or "") == {"stage": 2}


def test_tags_reach_history(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(
        wf.seq_orch, input=1, instance_id=env.iid(), tags={"team": "agents", "tier": "dev"}
    )
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    started = [
        e for e in env.client.get_orchestration_history(iid) if type(e).__name__ == "ExecutionStartedEvent"
    ]
    assert len(started) == 1
    assert dict(getattr(started[0], "tags", None) or {}) == {"team": "agents", "tier": "dev"}


_STEP_OPEN, _STEP_CLOSE = "OrchestratorStarted", "OrchestratorCompleted"
_START = [_STEP_OPEN, "ExecutionStarted"]
_END = [_STEP_CLOSE, "ExecutionCompleted"]

# History shapes recorded from the reference backend for deterministic orchestrations.
HISTORY_SHAPES: list[tuple[str, Any, list[str]]] = [
    (
        "seq_orch",
        2,
        [
            *_START,
            "TaskScheduled",
            _STEP_CLOSE,
            _STEP_OPEN,
            "TaskCompleted",
            "TaskScheduled",
            _STEP_CLOSE,
            _STEP_OPEN,
            "TaskCompleted",
            *_END,
        ],
    ),
    ("timer_orch", 0.2, [*_START, "TimerCreated", _STEP_CLOSE, _STEP_OPEN, "TimerFired", *_END]),
    (
        "can_orch",
        {"count": 1, "limit": 2},
        [*_START, "TaskScheduled", _STEP_CLOSE, _STEP_OPEN, "TaskCompleted", *_END],
    ),
    ("failing_orch", "x", [*_START, "TaskScheduled", _STEP_CLOSE, _STEP_OPEN, "TaskFailed", *_END]),
    (
        "retry_orch",
        "RETRY",
        [
            *_START,
            "TaskScheduled",
            _STEP_CLOSE,
            _STEP_OPEN,
            "TaskFailed",
            "TimerCreated",
            _STEP_CLOSE,
            _STEP_OPEN,
            "TimerFired",
            "TaskScheduled",
            _STEP_CLOSE,
            _STEP_OPEN,
            "TaskCompleted",
            *_END,
        ],
    ),
    (
        "parent_orch",
        1,
        [
            *_START,
            "SubOrchestrationInstanceCreated",
            _STEP_CLOSE,
            _STEP_OPEN,
            "SubOrchestrationInstanceCompleted",
            *_END,
        ],
    ),
    (
        "entity_orch",
        "KEY",
        [
            *_START,
            "EntityOperationCalled",
            _STEP_CLOSE,
            _STEP_OPEN,
            "EntityOperationCompleted",
            "EntityOperationSignaled",
            "EntityOperationCalled",
            _STEP_CLOSE,
            _STEP_OPEN,
            "EntityOperationCompleted",
            "EntityOperationCalled",
            _STEP_CLOSE,
            _STEP_OPEN,
            "EntityOperationCompleted",
            *_END,
        ],
    ),
]


@pytest.mark.parametrize(("name", "payload", "expected"), HISTORY_SHAPES, ids=[c[0] for c in HISTORY_SHAPES])
def test_history_shape_matches_reference(env: Env, name: str, payload: Any, expected: list[str]) -> None:
    if payload in ("RETRY", "KEY"):
        payload = env.iid(name)
        if name == "retry_orch":
            wf.set_flaky(payload, 1)
    iid = env.client.schedule_new_orchestration(name, input=payload, instance_id=env.iid())
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    kinds = [type(e).__name__.removesuffix("Event") for e in env.client.get_orchestration_history(iid)]
    assert kinds == expected


def test_stream_history_of_missing_instance(env: Env) -> None:
    with pytest.raises(grpc.RpcError) as err:
        env.client.get_orchestration_history(env.iid("missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_wait_for_start_and_completion_timeouts(env: Env) -> None:
    assert env.client.get_orchestration_state(env.iid("missing")) is None
    iid = env.client.schedule_new_orchestration(wf.wait_forever, instance_id=env.iid())
    state = env.client.wait_for_orchestration_start(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.RUNNING
    with pytest.raises(TimeoutError):
        env.client.wait_for_orchestration_completion(iid, timeout=1)
    env.client.terminate_orchestration(iid)
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)


def test_raise_event_to_missing_instance(env: Env) -> None:
    with pytest.raises(grpc.RpcError) as err:
        env.client.raise_orchestration_event(env.iid("missing"), "x")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_get_instance_payloads(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.seq_orch, input=2, instance_id=env.iid())
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    with_payloads = env.client.get_orchestration_state(iid, fetch_payloads=True)
    without = env.client.get_orchestration_state(iid, fetch_payloads=False)
    assert with_payloads is not None and without is not None
    assert with_payloads.serialized_output == "[0, 2]"
    assert without.serialized_output is None and without.serialized_input is None
    assert with_payloads.name == "seq_orch"


def test_raw_start_and_get(env: Env) -> None:
    with grpc.insecure_channel(env.address) as channel:
        stub: Any = stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
        iid = env.iid("raw")
        res = stub.StartInstance(pb.CreateInstanceRequest(instanceId=iid, name="seq_orch"), timeout=5)
        assert res.instanceId == iid
        done = stub.WaitForInstanceCompletion(
            pb.GetInstanceRequest(instanceId=iid, getInputsAndOutputs=True), timeout=TIMEOUT
        )
        assert done.exists and done.orchestrationState.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED


def test_long_history_streams_in_chunks(env: Env) -> None:
    names = [f"n{i}" for i in range(110)]
    iid = env.client.schedule_new_orchestration(wf.event_orch, input=names, instance_id=env.iid())
    env.client.wait_for_orchestration_start(iid, timeout=TIMEOUT)
    for i, name in enumerate(names):
        env.client.raise_orchestration_event(iid, name, data=i)
    assert output_of(env, iid) == list(range(110))
    history = env.client.get_orchestration_history(iid)
    assert len(history) > 100
    kinds = [type(e).__name__ for e in history]
    assert kinds.count("EventRaisedEvent") == 110
    assert kinds[0] == "OrchestratorStartedEvent" and kinds[-1] == "ExecutionCompletedEvent"
    # The history really arrives in several chunks (of at most 100 events, like the reference),
    # and the client stitched them back together in order.
    with grpc.insecure_channel(env.address) as channel:
        stub: Any = stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
        chunks = list(stub.StreamInstanceHistory(pb.StreamInstanceHistoryRequest(instanceId=iid)))
    sizes = [len(c.events) for c in chunks]
    assert len(chunks) > 1 and all(0 < n <= 100 for n in sizes), sizes
    assert sum(sizes) == len(history)
    streamed = [e.WhichOneof("eventType") for c in chunks for e in c.events]
    assert streamed[0] == "orchestratorStarted" and streamed[-1] == "executionCompleted"


def test_sub_orchestration_continue_as_new_and_timer(env: Env) -> None:
    ids = [
        env.client.schedule_new_orchestration(
            wf.can_orch, input={"count": 0, "limit": 3}, instance_id=env.iid()
        )
        for _ in range(3)
    ]
    timer = env.client.schedule_new_orchestration(wf.timer_orch, input=0.2, instance_id=env.iid())
    assert [output_of(env, i) for i in ids] == [3, 3, 3]
    assert output_of(env, timer) >= 0.2
