"""Differential tests: management RPCs (reuse policy, terminate, suspend, query, purge, restart, rewind)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from durabletask.client import OrchestrationQuery, OrchestrationStatus
from durabletask.internal import orchestrator_service_pb2 as pb

from tests.sqlite_hub import workflows as wf
from tests.sqlite_hub.conftest import Env

TIMEOUT = 30


def wait_status(env: Env, iid: str, status: OrchestrationStatus) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        state = env.client.get_orchestration_state(iid)
        if state is not None and state.runtime_status == status:
            return
        assert time.monotonic() < deadline, f"{iid} never reached {status}"
        time.sleep(0.05)


def test_duplicate_instance_id_rejected(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.seq_orch, input=1, instance_id=env.iid())
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as err:
        env.client.schedule_new_orchestration(wf.seq_orch, input=1, instance_id=iid)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_reuse_policy_replaces_terminal_instance(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.seq_orch, input=1, instance_id=env.iid())
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    policy = pb.OrchestrationIdReusePolicy(
        replaceableStatus=[pb.ORCHESTRATION_STATUS_COMPLETED, pb.ORCHESTRATION_STATUS_FAILED]
    )
    env.client.schedule_new_orchestration(wf.seq_orch, input=3, instance_id=iid, reuse_id_policy=policy)
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and json.loads(state.serialized_output or "") == [0, 2, 4]


def test_reuse_policy_rejects_running_instance(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.wait_forever, instance_id=env.iid())
    env.client.wait_for_orchestration_start(iid, timeout=TIMEOUT)
    policy = pb.OrchestrationIdReusePolicy(replaceableStatus=[pb.ORCHESTRATION_STATUS_COMPLETED])
    with pytest.raises(grpc.RpcError) as err:
        env.client.schedule_new_orchestration(wf.wait_forever, instance_id=iid, reuse_id_policy=policy)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    env.client.terminate_orchestration(iid)
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)


def test_terminate(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.wait_forever, instance_id=env.iid())
    env.client.wait_for_orchestration_start(iid, timeout=TIMEOUT)
    env.client.terminate_orchestration(iid, output="stopped by test", recursive=False)
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.TERMINATED
    assert json.loads(state.serialized_output or "") == "stopped by test"
    env.client.terminate_orchestration(iid)  # terminating a terminal instance is a no-op
    env.client.terminate_orchestration(env.iid("missing"))  # and so is a missing one


def test_terminate_recursive(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.parent_waiting, instance_id=env.iid())
    child = f"{iid}-child"
    wait_status(env, child, OrchestrationStatus.RUNNING)
    env.client.terminate_orchestration(iid, recursive=True)
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.TERMINATED
    if env.is_sqlite:
        # Deviation (follows Durable Task Scheduler): the reference does not recurse.
        child_state = env.client.wait_for_orchestration_completion(child, timeout=TIMEOUT)
        assert child_state is not None and child_state.runtime_status == OrchestrationStatus.TERMINATED
    else:
        child_state = env.client.get_orchestration_state(child)
        assert child_state is not None and child_state.runtime_status == OrchestrationStatus.RUNNING
        env.client.terminate_orchestration(child)
        env.client.wait_for_orchestration_completion(child, timeout=TIMEOUT)


def test_terminate_pending_scheduled_instance(env: Env) -> None:
    # wait_forever cannot finish by itself: the reference starts it at once (it ignores the
    # start time), and a quick orchestration could complete before the terminate arrives.
    iid = env.client.schedule_new_orchestration(
        wf.wait_forever, instance_id=env.iid(), start_at=datetime.now(UTC) + timedelta(hours=1)
    )
    env.client.terminate_orchestration(iid, output="never ran")
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.TERMINATED


def test_scheduled_start(env: Env) -> None:
    start_at = datetime.now(UTC) + timedelta(seconds=1.5)
    iid = env.client.schedule_new_orchestration(
        wf.seq_orch, input=1, instance_id=env.iid(), start_at=start_at
    )
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    if env.is_sqlite:
        # Deviation (follows Durable Task Scheduler): the start time is honoured.
        assert datetime.now(UTC) >= start_at


def test_suspend_and_resume(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.event_orch, input=["a", "b"], instance_id=env.iid())
    env.client.wait_for_orchestration_start(iid, timeout=TIMEOUT)
    env.client.suspend_orchestration(iid, reason="maintenance")
    wait_status(env, iid, OrchestrationStatus.SUSPENDED)
    env.client.suspend_orchestration(iid)  # already suspended: no-op
    env.client.raise_orchestration_event(iid, "a", data=1)
    env.client.raise_orchestration_event(iid, "b", data=2)
    time.sleep(0.5)
    state = env.client.get_orchestration_state(iid)
    assert state is not None and state.runtime_status == OrchestrationStatus.SUSPENDED
    env.client.resume_orchestration(iid, reason="done")
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == [1, 2]


def test_suspend_missing_instance(env: Env) -> None:
    for call in (env.client.suspend_orchestration, env.client.resume_orchestration):
        with pytest.raises(grpc.RpcError) as err:
            call(env.iid("missing"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_query_instances_filters_and_paging(env: Env) -> None:
    prefix = env.iid("q")
    before = datetime.now(UTC) - timedelta(seconds=1)
    ids = [
        env.client.schedule_new_orchestration(wf.seq_orch, input=1, instance_id=f"{prefix}-{i}")
        for i in range(5)
    ]
    for iid in ids:
        env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    running = env.client.schedule_new_orchestration(wf.wait_forever, instance_id=f"{prefix}-running")
    env.client.wait_for_orchestration_start(running, timeout=TIMEOUT)

    everything = env.client.get_all_orchestration_states(OrchestrationQuery(instance_id_prefix=prefix))
    assert sorted(s.instance_id for s in everything) == sorted([*ids, running])

    paged = env.client.get_all_orchestration_states(
        OrchestrationQuery(instance_id_prefix=prefix, max_instance_count=2, fetch_inputs_and_outputs=True)
    )
    assert sorted(s.instance_id for s in paged) == sorted([*ids, running])
    assert all(s.serialized_input == "1" for s in paged if s.instance_id in ids)

    completed = env.client.get_all_orchestration_states(
        OrchestrationQuery(instance_id_prefix=prefix, runtime_status=[OrchestrationStatus.COMPLETED])
    )
    assert sorted(s.instance_id for s in completed) == sorted(ids)

    window = env.client.get_all_orchestration_states(
        OrchestrationQuery(instance_id_prefix=prefix, created_time_from=before, created_time_to=before)
    )
    assert window == []
    recent = env.client.get_all_orchestration_states(
        OrchestrationQuery(instance_id_prefix=prefix, created_time_from=before)
    )
    assert len(recent) == 6
    env.client.terminate_orchestration(running)
    env.client.wait_for_orchestration_completion(running, timeout=TIMEOUT)


def test_list_instance_ids_paging(isolated_env: Env) -> None:
    ids = [
        isolated_env.client.schedule_new_orchestration(
            wf.seq_orch, input=0, instance_id=isolated_env.iid("l")
        )
        for _ in range(5)
    ]
    for iid in ids:
        isolated_env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    failed = isolated_env.client.schedule_new_orchestration(
        wf.failing_orch, input="x", instance_id=isolated_env.iid("f")
    )
    isolated_env.client.wait_for_orchestration_completion(failed, timeout=TIMEOUT)

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = isolated_env.client.list_instance_ids(page_size=2, continuation_token=token)
        seen.extend(page.items)
        pages += 1
        token = page.continuation_token
        if token is None:
            break
    assert sorted(seen) == sorted([*ids, failed])
    assert pages == 3
    only_failed = isolated_env.client.list_instance_ids(runtime_status=[OrchestrationStatus.FAILED])
    assert only_failed.items == [failed]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert isolated_env.client.list_instance_ids(completed_time_from=future).items == []


def test_purge_by_id(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.seq_orch, input=1, instance_id=env.iid())
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    result = env.client.purge_orchestration(iid, recursive=False)
    assert result.deleted_instance_count == 1 and result.is_complete is True
    assert env.client.get_orchestration_state(iid) is None
    assert env.client.purge_orchestration(iid).deleted_instance_count == 0
    running = env.client.schedule_new_orchestration(wf.wait_forever, instance_id=env.iid())
    env.client.wait_for_orchestration_start(running, timeout=TIMEOUT)
    assert env.client.purge_orchestration(running).deleted_instance_count == 0  # not terminal
    env.client.terminate_orchestration(running)
    env.client.wait_for_orchestration_completion(running, timeout=TIMEOUT)


def test_purge_recursive(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.parent_orch, input=1, instance_id=env.iid())
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    result = env.client.purge_orchestration(iid, recursive=True)
    child = env.client.get_orchestration_state(f"{iid}-child")
    if env.is_sqlite:
        # Deviation (follows Durable Task Scheduler): sub-orchestrations are purged too.
        assert result.deleted_instance_count == 2 and child is None
    else:
        assert result.deleted_instance_count == 1 and child is not None


def test_purge_by_filter(isolated_env: Env) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    done = [
        isolated_env.client.schedule_new_orchestration(
            wf.seq_orch, input=0, instance_id=isolated_env.iid("p")
        )
        for _ in range(3)
    ]
    failed = isolated_env.client.schedule_new_orchestration(
        wf.failing_orch, input="x", instance_id=isolated_env.iid("pf")
    )
    for iid in [*done, failed]:
        isolated_env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    result = isolated_env.client.purge_orchestrations_by(
        created_time_from=start, runtime_status=[OrchestrationStatus.COMPLETED]
    )
    assert result.deleted_instance_count == 3
    assert all(isolated_env.client.get_orchestration_state(i) is None for i in done)
    assert isolated_env.client.get_orchestration_state(failed) is not None
    result = isolated_env.client.purge_orchestrations_by(created_time_to=start)
    assert result.deleted_instance_count == 0


def test_restart(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.seq_orch, input=2, instance_id=env.iid())
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    same = env.client.restart_orchestration(iid)
    assert same == iid
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and json.loads(state.serialized_output or "") == [0, 2]
    other = env.client.restart_orchestration(iid, restart_with_new_instance_id=True)
    assert other != iid
    state = env.client.wait_for_orchestration_completion(other, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_input or "") == 2


def test_restart_errors(env: Env) -> None:
    with pytest.raises(grpc.RpcError) as err:
        env.client.restart_orchestration(env.iid("missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    iid = env.client.schedule_new_orchestration(wf.wait_forever, instance_id=env.iid())
    env.client.wait_for_orchestration_start(iid, timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as err:
        env.client.restart_orchestration(iid)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    env.client.terminate_orchestration(iid)
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)


def test_rewind(env: Env) -> None:
    key = env.iid("rw")
    wf.set_failing(key, True)
    iid = env.client.schedule_new_orchestration(wf.flaky_orch, input=key, instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.FAILED
    wf.set_failing(key, False)
    env.client.rewind_orchestration(iid, reason="fixed")
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == [2, f"ok:{key}"]


def test_rewind_sub_orchestration(env: Env) -> None:
    key = env.iid("rws")
    wf.set_failing(key, True)
    iid = env.client.schedule_new_orchestration(wf.flaky_parent, input=key, instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.FAILED
    wf.set_failing(key, False)
    env.client.rewind_orchestration(iid)
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == [2, f"ok:{key}"]


def test_rewind_errors(env: Env) -> None:
    with pytest.raises(grpc.RpcError) as err:
        env.client.rewind_orchestration(env.iid("missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    iid = env.client.schedule_new_orchestration(wf.seq_orch, input=1, instance_id=env.iid())
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as err:
        env.client.rewind_orchestration(iid)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_terminate_suspended_instance(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.wait_forever, instance_id=env.iid())
    env.client.wait_for_orchestration_start(iid, timeout=TIMEOUT)
    env.client.suspend_orchestration(iid)
    wait_status(env, iid, OrchestrationStatus.SUSPENDED)
    env.client.terminate_orchestration(iid, output="bye")
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.TERMINATED


def test_terminate_non_recursive_leaves_child_running(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(wf.parent_waiting, instance_id=env.iid())
    child = f"{iid}-child"
    wait_status(env, child, OrchestrationStatus.RUNNING)
    env.client.terminate_orchestration(iid, recursive=False)
    env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    time.sleep(0.3)
    child_state = env.client.get_orchestration_state(child)
    assert child_state is not None and child_state.runtime_status == OrchestrationStatus.RUNNING
    env.client.terminate_orchestration(child)
    state = env.client.wait_for_orchestration_completion(child, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.TERMINATED


def test_list_and_query_time_windows(isolated_env: Env) -> None:
    iid = isolated_env.client.schedule_new_orchestration(wf.seq_orch, input=0, instance_id=isolated_env.iid())
    isolated_env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    past = datetime.now(UTC) - timedelta(hours=1)
    future = datetime.now(UTC) + timedelta(hours=1)
    assert isolated_env.client.list_instance_ids(
        completed_time_from=past, completed_time_to=future
    ).items == [iid]
    assert isolated_env.client.list_instance_ids(completed_time_to=past).items == []
    found = isolated_env.client.get_all_orchestration_states(
        OrchestrationQuery(created_time_from=past, created_time_to=future)
    )
    assert [s.instance_id for s in found] == [iid]
    assert isolated_env.client.get_all_orchestration_states(OrchestrationQuery(created_time_to=past)) == []
