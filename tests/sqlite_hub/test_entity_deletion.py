"""Deleted entities do not exist: differential tests on both backends, and the app's own entity.

The SQLite hub removes an entity whose batch leaves it without state, lock or queued
operations, as Azure Durable Task Scheduler does. The in-memory reference keeps such an
entity (no state) until ``CleanEntityStorage`` removes it; each test states what the
reference does, so a change on either side is noticed.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from durabletask.client import EntityQuery, OrchestrationStatus, TaskHubGrpcClient
from durabletask.entities import EntityInstanceId

from tests.sqlite_hub import workflows as wf
from tests.sqlite_hub.app_driver import app_backend
from tests.sqlite_hub.conftest import Env
from tests.sqlite_hub.test_entities import TIMEOUT, eventually, state_of


def listed(client: TaskHubGrpcClient, eid: EntityInstanceId) -> list[Any]:
    query = EntityQuery(instance_id_starts_with=str(eid), include_transient=True)
    return [m for m in client.get_all_entities(query) if m.id == eid]


def exists_without_state(client: TaskHubGrpcClient, eid: EntityInstanceId) -> bool:
    meta = client.get_entity(eid)
    return meta is not None and not meta._state


def test_operation_that_deletes_state_removes_the_entity(env: Env) -> None:
    eid = EntityInstanceId("counter", env.iid("del"))
    env.client.signal_entity(eid, "add", 4)
    eventually(lambda: state_of(env, eid) == 4)
    env.client.signal_entity(eid, "delete")
    if env.is_sqlite:
        eventually(lambda: env.client.get_entity(eid) is None)
        assert listed(env.client, eid) == []
    else:  # the reference keeps the empty entity until CleanEntityStorage
        eventually(lambda: exists_without_state(env.client, eid))
        assert len(listed(env.client, eid)) == 1
    # A later signal recreates it from empty on both backends.
    env.client.signal_entity(eid, "add", 2)
    eventually(lambda: state_of(env, eid) == 2)
    assert len(listed(env.client, eid)) == 1


def test_call_after_delete_in_one_batch_starts_from_empty(env: Env) -> None:
    eid = EntityInstanceId("counter", env.iid("del"))
    for op, value in (("add", 3), ("delete", None), ("add", 5)):
        env.client.signal_entity(eid, op, value)
    eventually(lambda: state_of(env, eid) == 5)


def test_lock_without_state_leaves_no_entity(env: Env) -> None:
    key = env.iid("lock")
    eid = EntityInstanceId("counter", key)
    iid = env.client.schedule_new_orchestration(wf.lock_only_orch, input=key, instance_id=env.iid())
    state = env.client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    if env.is_sqlite:  # as Durable Task Scheduler: the released, never-used entity is gone
        eventually(lambda: env.client.get_entity(eid) is None)
        assert listed(env.client, eid) == []
    else:
        eventually(lambda: exists_without_state(env.client, eid))


def test_clean_entity_storage(isolated_env: Env) -> None:
    env = isolated_env
    keep = EntityInstanceId("counter", env.iid("keep"))
    empty = EntityInstanceId("counter", env.iid("empty"))
    env.client.signal_entity(keep, "add", 1)
    env.client.signal_entity(empty, "add", 1)
    eventually(lambda: state_of(env, keep) == 1 and state_of(env, empty) == 1)
    env.client.signal_entity(empty, "delete")
    if env.is_sqlite:
        eventually(lambda: env.client.get_entity(empty) is None)
    else:
        eventually(lambda: exists_without_state(env.client, empty))
    result = env.client.clean_entity_storage(remove_empty_entities=True, release_orphaned_locks=True)
    # The SQLite hub already removed the deleted entity; the reference removes it now.
    assert result.empty_entities_removed == (0 if env.is_sqlite else 1)
    assert result.orphaned_locks_released == 0
    assert env.client.get_entity(empty) is None
    assert state_of(env, keep) == 1
    assert [m.id for m in env.client.get_all_entities(EntityQuery(include_transient=True))] == [keep]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_app_entity_that_deletes_itself_is_gone(kind: str, tmp_path: pathlib.Path) -> None:
    with app_backend(kind, tmp_path) as backend:
        client, is_sqlite = backend.client, backend.is_sqlite
        eid = EntityInstanceId("notes", "to-delete")
        client.signal_entity(eid, "add", "first")
        eventually(lambda: (m := client.get_entity(eid)) is not None and bool(m._state))
        meta = client.get_entity(eid)
        assert meta is not None and json.loads(meta._state or "null") == ["first"]
        client.signal_entity(eid, "clear")
        if is_sqlite:
            eventually(lambda: client.get_entity(eid) is None)
            assert listed(client, eid) == []
        else:
            eventually(lambda: exists_without_state(client, eid))
