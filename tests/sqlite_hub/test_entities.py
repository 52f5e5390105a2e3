"""Differential tests: entities (signals, calls, locks, delayed signals, queries, cleaning)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from durabletask.client import EntityQuery, OrchestrationStatus
from durabletask.entities import EntityInstanceId

from tests.sqlite_hub import workflows as wf
from tests.sqlite_hub.conftest import Env

TIMEOUT = 30


def eventually(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


def state_of(env: Env, eid: EntityInstanceId) -> object:
    """The entity's deserialized state, or None when it does not exist or has no state."""
    meta = env.client.get_entity(eid)
    if meta is None:
        return None
    raw = meta._state  # '' when the entity exists without state
    return json.loads(raw) if raw else None


def test_signal_and_get_entity(env: Env) -> None:
    eid = EntityInstanceId("counter", env.iid("c"))
    assert env.client.get_entity(eid) is None
    for amount in (1, 2, 3):
        env.client.signal_entity(eid, "add", amount)
    eventually(lambda: state_of(env, eid) == 6)
    meta = env.client.get_entity(eid, include_state=False)
    assert meta is not None and meta.id == eid


def test_call_entity_from_orchestration(env: Env) -> None:
    key = env.iid("c")
    iid = env.client.schedule_new_orchestration(wf.entity_orch, input=key, instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    assert json.loads(state.serialized_output or "") == 16
    assert state_of(env, EntityInstanceId("counter", key)) == 16


def test_entity_operation_failure_reaches_caller(env: Env) -> None:
    iid = env.client.schedule_new_orchestration(
        wf.entity_error_orch, input=env.iid("c"), instance_id=env.iid()
    )
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    output = json.loads(state.serialized_output or "")
    assert output.startswith("caught:") and "exploded" in output


def test_entity_signals_entity_and_starts_orchestration(env: Env) -> None:
    key = env.iid("c")
    relay = EntityInstanceId("relay", env.iid("r"))
    env.client.signal_entity(relay, "forward", {"key": key, "amount": 7})
    eventually(lambda: state_of(env, EntityInstanceId("counter", key)) == 7)
    child = env.iid("from-entity")
    env.client.signal_entity(relay, "start", {"x": 4, "instance_id": child})
    eventually(lambda: env.client.get_orchestration_state(child) is not None)
    state = env.client.wait_for_orchestration_completion(child, timeout=TIMEOUT)
    assert state is not None and json.loads(state.serialized_output or "") == 8


def test_critical_section_locks(env: Env) -> None:
    keys = [env.iid("a"), env.iid("b")]
    for k in keys:
        env.client.signal_entity(EntityInstanceId("counter", k), "set", 10)
    eventually(lambda: all(state_of(env, EntityInstanceId("counter", k)) == 10 for k in keys))
    ids = [
        env.client.schedule_new_orchestration(wf.lock_orch, input=keys, instance_id=env.iid())
        for _ in range(3)
    ]
    outputs = []
    for iid in ids:
        state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
        assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
        outputs.append(json.loads(state.serialized_output or ""))
    # Each critical section saw a consistent, serialised read-modify-write.
    assert sorted(o[0] for o in outputs) == [11, 12, 13]
    assert all(o[0] == o[1] for o in outputs)
    for k in keys:
        meta = env.client.get_entity(EntityInstanceId("counter", k))
        assert meta is not None and state_of(env, meta.id) == 13
        assert not meta._locked_by


def test_delayed_signal(env: Env) -> None:
    eid = EntityInstanceId("counter", env.iid("d"))
    env.client.signal_entity(eid, "add", 1)
    eventually(lambda: state_of(env, eid) == 1)
    due = datetime.now(UTC) + timedelta(seconds=1)
    env.client.signal_entity(eid, "add", 5, signal_time=due)
    time.sleep(0.3)
    asked = datetime.now(UTC)
    early = state_of(env, eid)
    if asked < due - timedelta(seconds=0.2):  # a starved test thread may wake after the due time
        assert early == 1, "the delayed signal ran before its time"
    eventually(lambda: state_of(env, eid) == 6)
    assert datetime.now(UTC) >= due - timedelta(seconds=0.05)


def test_query_entities_paging_and_filters(env: Env) -> None:
    prefix = env.iid("qe")
    keys = [f"{prefix}-{i}" for i in range(5)]
    for k in keys:
        env.client.signal_entity(EntityInstanceId("counter", k), "add", 1)
    for k in keys:
        eventually(lambda k=k: state_of(env, EntityInstanceId("counter", k)) == 1)  # type: ignore[misc]
    starts_with = str(EntityInstanceId("counter", prefix))
    found = env.client.get_all_entities(EntityQuery(instance_id_starts_with=starts_with, page_size=2))
    assert sorted(m.id.key for m in found) == keys
    assert all(m.get_state(int) == 1 for m in found)
    no_state = env.client.get_all_entities(
        EntityQuery(instance_id_starts_with=starts_with, include_state=False)
    )
    assert len(no_state) == 5
    future = datetime.now(UTC) + timedelta(hours=1)
    assert (
        env.client.get_all_entities(
            EntityQuery(instance_id_starts_with=starts_with, last_modified_from=future)
        )
        == []
    )


def test_delayed_signal_from_orchestration(env: Env) -> None:
    key = env.iid("ds")
    iid = env.client.schedule_new_orchestration(wf.delayed_signal_orch, input=key, instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    due = json.loads(state.serialized_output or "")
    eid = EntityInstanceId("counter", key)
    eventually(lambda: state_of(env, eid) == 3)
    assert time.time() >= due - 0.05
