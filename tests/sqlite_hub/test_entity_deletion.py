"""Deleted entities do not exist: differential tests on both backends, and the app's own entity.

The SQLite hub removes an entity whose batch leaves it without state, lock or queued
operations, as Azure Durable Task Scheduler does. The in-memory reference keeps such an
entity (no state) until ``CleanEntityStorage`` removes it; each test states what the
reference does, so a change on either side is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import azure.durable_functions as df
import pytest
from durabletask.client import EntityQuery, OrchestrationStatus, TaskHubGrpcClient
from durabletask.entities import EntityInstanceId
from durabletask.testing import create_test_backend

from devhost.app_index import index_functions
from devhost.invoker import Invoker
from devhost.sqlite_hub import SqliteSidecar
from devhost.work_items import WorkItemDriver
from tests.sqlite_hub import workflows as wf
from tests.sqlite_hub.conftest import Env, free_port
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


# -- an app-level Durable Functions entity, run by devhost's work-item driver --------------

notes_app = df.Blueprint()


@notes_app.entity_trigger(context_name="context", entity_name="notes")
def notes(context: df.DurableEntityContext) -> None:
    """A v1-style azure.durable_functions entity: ``add`` appends, ``clear`` deletes it."""
    if context.operation_name == "add":
        context.set_state([*(context.get_state(list) or []), context.get_input()])
    elif context.operation_name == "clear":
        context.destruct_on_exit()
    context.set_result(context.get_state(list))


@contextlib.contextmanager
def app_backend(kind: str, directory: pathlib.Path) -> Iterator[tuple[TaskHubGrpcClient, bool]]:
    """A backend whose only worker is devhost's driver running the app's entities."""
    sidecar: SqliteSidecar | None = None
    backend: Any = None
    if kind == "sqlite":
        sidecar = SqliteSidecar(directory / "taskhub.db")
        sidecar.start()
        address = sidecar.address
    else:
        port = free_port()
        backend = create_test_backend(port=port)
        address = f"127.0.0.1:{port}"
    app = df.DFApp()
    app.register_functions(notes_app)
    invoker = Invoker("{}", str(directory))
    driver = WorkItemDriver(address, index_functions(app), invoker)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(driver.run(),), daemon=True)
    thread.start()
    client = TaskHubGrpcClient(host_address=address)
    try:
        yield client, sidecar is not None
    finally:
        client.close()
        asyncio.run_coroutine_threadsafe(driver.stop(grace=5), loop).result(timeout=15)
        thread.join(timeout=15)
        loop.close()
        invoker.close()
        if sidecar is not None:
            sidecar.stop()
        else:
            backend.stop()
            backend.reset()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_app_entity_that_deletes_itself_is_gone(kind: str, tmp_path: pathlib.Path) -> None:
    with app_backend(kind, tmp_path) as (client, is_sqlite):
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
