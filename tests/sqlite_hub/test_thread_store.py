"""agent.store against both backends: the app's own storage entities, run by devhost's
work-item driver, written through real signals and read back through the real async client.

The HTTP API reads history and deletes threads only through ThreadStore; here its reads,
its long-poll hint (which the SQLite hub honours and the reference ignores), the paging of
entity queries, and a deletion that must touch only its own thread are checked in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import pathlib
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import pytest
from durabletask import task
from durabletask.client import AsyncTaskHubGrpcClient, OrchestrationStatus
from durabletask.entities import EntityInstanceId

from activities import sweep as sweep_activity
from agent import history, maintenance, store
from agent.contract import (
    BLOB_ENTITY,
    CALLER_ENTITY,
    LEGACY_HISTORY_ENTITY,
    MAINTENANCE_ORCHESTRATION,
    MESSAGE_ENTITY,
    PAGE_ENTITY,
    THREAD_ENTITY,
    THREAD_ORCHESTRATION,
    child_key,
)
from agent.errors import BackendUnavailableError
from agent.maintenance import SweepResult, sweep
from agent.settings import get_settings, load_settings
from agent.store import EntityRead, ThreadStore, delete_thread
from agent.thread import ThreadStatus
from entities import legacy_history, storage, usage
from orchestrations import maintenance as maintenance_orchestration
from tests.sqlite_hub.app_driver import AppBackend, app_backend
from tests.sqlite_hub.test_entities import eventually

T0 = "2026-12-03T06:00:00.000Z"
IDLE_ORCHESTRATION = THREAD_ORCHESTRATION

idle_threads = df.Blueprint()


@idle_threads.orchestration_trigger(context_name="context", orchestration=IDLE_ORCHESTRATION)
def idle_thread(context: task.OrchestrationContext, data: Any) -> Generator[task.Task[Any], Any]:
    """Stands in for the thread orchestration: it publishes the status it is given and
    lives until it is terminated."""
    if isinstance(data, dict) and "status" in data:
        context.set_custom_status(data["status"])
    yield context.wait_for_external_event("never")


BLUEPRINTS = (storage.bp, legacy_history.bp, usage.bp, idle_threads)


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppBackend]:
    with app_backend(request.param, tmp_path_factory.mktemp(request.param), BLUEPRINTS) as running:
        yield running


def new_thread_id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def entry(seq: int, role: str = "user", content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "id": f"e{seq}", "role": role, "content": content, "created_at": T0} | extra


def signal(backend: AppBackend, name: str, key: str, operation: str, arg: Any = None) -> None:
    backend.client.signal_entity(EntityInstanceId(name, key), operation, arg)


def state_of(backend: AppBackend, name: str, key: str) -> Any:
    found = backend.client.get_entity(EntityInstanceId(name, key))
    return json.loads(found._state) if found is not None and found._state else None


def write(backend: AppBackend, name: str, key: str, operation: str, arg: Any) -> Any:
    """Signal one write and wait until the entity has state."""
    signal(backend, name, key, operation, arg)
    eventually(lambda: state_of(backend, name, key) is not None)
    return state_of(backend, name, key)


def write_page(backend: AppBackend, thread_id: str, entries: list[dict[str, Any]]) -> None:
    for page in sorted({history.page_of(e["seq"]) for e in entries}):
        items = [e for e in entries if history.page_of(e["seq"]) == page]
        key = child_key(thread_id, page)
        signal(backend, PAGE_ENTITY, key, "append", {"entries": items})
        eventually(functools.partial(page_has, backend, key, items))


def page_has(backend: AppBackend, key: str, items: list[dict[str, Any]]) -> bool:
    stored = (state_of(backend, PAGE_ENTITY, key) or {}).get("entries", [])
    return {e["seq"] for e in items} <= {e["seq"] for e in stored}


def run[T](backend: AppBackend, work: Callable[[ThreadStore, AsyncTaskHubGrpcClient], Awaitable[T]]) -> T:
    async def main() -> T:
        client = AsyncTaskHubGrpcClient(host_address=backend.address)
        try:
            async with asyncio.timeout(60):
                return await work(ThreadStore(client), client)
        finally:
            await client.close()

    return asyncio.run(main())


# -- reads -------------------------------------------------------------------------------


def test_a_read_returns_the_state_and_when_it_last_changed(backend: AppBackend) -> None:
    thread_id = new_thread_id()
    key = child_key(thread_id, 2)
    assert run(backend, lambda s, _: s.read(BLOB_ENTITY, key)) == EntityRead(False, None, 0.0)
    before = time.time()
    write(backend, BLOB_ENTITY, key, "put", entry(2, "assistant", "long"))
    after = time.time()
    found = run(backend, lambda s, _: s.read(BLOB_ENTITY, key))
    assert found.exists and found.state == entry(2, "assistant", "long")
    assert before - 1 <= found.modified <= after + 1


def test_a_long_poll_read_answers_when_the_entity_changes_after_what_was_seen(backend: AppBackend) -> None:
    """The SQLite hub holds the read until the change; the reference answers at once with
    what it has. Either way the read never misses a change made after `seen`."""
    thread_id = new_thread_id()
    key = child_key(thread_id, "m-1")
    record = {"id": "m-1", "seq": 2, "digest": "d", "entry": entry(2, id="m-1")}
    first = write(backend, MESSAGE_ENTITY, key, "put", record)
    seen = run(backend, lambda s, _: s.message(thread_id, "m-1")).modified

    async def wait_then_write(s: ThreadStore, _: AsyncTaskHubGrpcClient) -> EntityRead:
        waiting = asyncio.create_task(s.message(thread_id, "m-1", wait_ms=30_000, seen=seen))
        await asyncio.sleep(0.3)  # let the read reach the backend before the write does
        signal(backend, MESSAGE_ENTITY, key, "put", {**record, "attempt": 2})
        return await waiting

    started = time.monotonic()
    answered = run(backend, wait_then_write)
    assert time.monotonic() - started < 25  # not the whole 30 s hold
    if backend.is_sqlite:
        assert answered.state == {**first, "attempts": 2}
        assert answered.modified > seen
    else:
        assert answered.state in (first, {**first, "attempts": 2})


def test_a_long_poll_with_nothing_seen_answers_at_once(backend: AppBackend) -> None:
    thread_id = new_thread_id()
    key = child_key(thread_id, "m-1")
    record = write(
        backend,
        MESSAGE_ENTITY,
        key,
        "put",
        {"id": "m-1", "seq": 2, "digest": "d", "entry": entry(2, id="m-1")},
    )
    started = time.monotonic()
    found = run(backend, lambda s, _: s.message(thread_id, "m-1", wait_ms=30_000))
    assert found.state == record
    assert time.monotonic() - started < 25


def test_exists_means_the_entity_holds_state(backend: AppBackend) -> None:
    thread_id = new_thread_id()
    assert run(backend, lambda s, _: s.exists(THREAD_ENTITY, thread_id)) is False
    write(backend, THREAD_ENTITY, thread_id, "init", {"created_at": T0, "agent": "a"})
    assert run(backend, lambda s, _: s.exists(THREAD_ENTITY, thread_id)) is True
    signal(backend, THREAD_ENTITY, thread_id, "delete")
    eventually(lambda: state_of(backend, THREAD_ENTITY, thread_id) is None)
    # The reference keeps a deleted entity without state; it does not exist either way.
    assert run(backend, lambda s, _: s.exists(THREAD_ENTITY, thread_id)) is False


def test_a_page_reads_large_entries_back_from_their_blobs(backend: AppBackend) -> None:
    thread_id = new_thread_id()
    large = entry(3, "assistant", "long " * 2000, reply_to="e2")
    lost = entry(4, "assistant", "never stored " * 500, reply_to="e2")
    write_page(backend, thread_id, [entry(2), history.stub_for(large), history.stub_for(lost)])
    write(backend, BLOB_ENTITY, child_key(thread_id, 3), "put", large)
    items = run(backend, lambda s, _: s.page(thread_id, 0))
    # A stub whose blob is not written reads as the stub: the entry is not readable yet.
    assert items == [entry(2), large, history.stub_for(lost)]
    assert run(backend, lambda s, _: s.page(thread_id, 5)) == []


def test_entries_cover_exactly_the_requested_range_across_pages(backend: AppBackend) -> None:
    thread_id = new_thread_id()
    write_page(backend, thread_id, [entry(seq) for seq in range(1, 41)])

    def seqs(after: int, limit: int, last_seq: int = 40) -> tuple[list[int], bool]:
        found, cut = run(
            backend, lambda s, _: s.entries(thread_id, after=after, limit=limit, last_seq=last_seq)
        )
        return [e["seq"] for e in found], cut

    assert seqs(0, 50) == (list(range(1, 41)), False)
    assert seqs(30, 5) == ([31, 32, 33, 34, 35], False)
    assert seqs(31, 1) == ([32], False)
    assert seqs(38, 50) == ([39, 40], False)
    assert seqs(40, 50) == ([], False)
    # last_seq only picks the pages to read; what else they hold (stored since) comes along.
    assert seqs(10, 50, last_seq=12) == (list(range(11, 33)), False)


def test_entries_stop_at_the_byte_bound_but_always_return_one(
    backend: AppBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread_id = new_thread_id()
    entries = [entry(seq, content="x" * 100) for seq in range(1, 7)]
    write_page(backend, thread_id, entries)
    three = sum(len(json.dumps(e)) for e in entries[:3])
    monkeypatch.setattr(store, "MAX_PAGE_BYTES", three)
    found, cut = run(backend, lambda s, _: s.entries(thread_id, after=0, limit=50, last_seq=6))
    assert ([e["seq"] for e in found], cut) == ([1, 2, 3], True)
    found, cut = run(backend, lambda s, _: s.entries(thread_id, after=3, limit=3, last_seq=6))
    assert ([e["seq"] for e in found], cut) == ([4, 5, 6], False)  # exactly at the bound
    monkeypatch.setattr(store, "MAX_PAGE_BYTES", 10)
    found, cut = run(backend, lambda s, _: s.entries(thread_id, after=0, limit=50, last_seq=6))
    assert ([e["seq"] for e in found], cut) == ([1], True)


def test_waiting_on_an_instance_returns_when_it_was_last_updated(backend: AppBackend) -> None:
    thread_id = new_thread_id()
    before = time.time()
    backend.client.schedule_new_orchestration(IDLE_ORCHESTRATION, input={}, instance_id=thread_id)
    backend.client.wait_for_orchestration_start(thread_id, timeout=30)
    updated = run(backend, lambda s, _: s.wait_instance(thread_id, seen=0.0, wait_ms=30_000))
    assert before - 1 <= updated <= time.time() + 1
    assert run(backend, lambda s, _: s.wait_instance(new_thread_id(), seen=0.0, wait_ms=200)) == 0.0
    backend.client.terminate_orchestration(thread_id)


# -- finding and deleting a thread's pieces ------------------------------------------------


def store_thread(backend: AppBackend, thread_id: str) -> int:
    """Every kind of piece a thread can have; returns how many pieces were written."""
    write(backend, THREAD_ENTITY, thread_id, "init", {"created_at": T0, "agent": "a"})
    write_page(backend, thread_id, [entry(1), entry(33)])  # pages 0 and 1
    write(backend, BLOB_ENTITY, child_key(thread_id, 2), "put", entry(2, "assistant", "big"))
    record = {"id": "m-1", "seq": 1, "digest": "d", "entry": entry(1, id="m-1")}
    write(backend, MESSAGE_ENTITY, child_key(thread_id, "m-1"), "put", record)
    legacy = {"id": "u1", "role": "user", "content": "old", "created_at": T0}
    write(backend, LEGACY_HISTORY_ENTITY, thread_id, "append", legacy)
    return 6


def test_pieces_are_found_page_by_page_and_only_for_their_thread(
    backend: AppBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "QUERY_PAGE_SIZE", 2)  # several continuation tokens per query
    thread_id = new_thread_id()
    neighbour = thread_id + "0"  # its ids start with thread_id: prefixes must not confuse them
    store_thread(backend, thread_id)
    store_thread(backend, neighbour)
    children, roots, legacy = run(backend, lambda s, _: s.pieces(thread_id))
    assert sorted(children) == sorted(
        [
            str(EntityInstanceId(BLOB_ENTITY, child_key(thread_id, 2))),
            str(EntityInstanceId(MESSAGE_ENTITY, child_key(thread_id, "m-1"))),
            str(EntityInstanceId(PAGE_ENTITY, child_key(thread_id, 0))),
            str(EntityInstanceId(PAGE_ENTITY, child_key(thread_id, 1))),
        ]
    )
    assert roots == [str(EntityInstanceId(THREAD_ENTITY, thread_id))]
    assert legacy == [str(EntityInstanceId(LEGACY_HISTORY_ENTITY, thread_id))]
    assert {thread_id, neighbour} <= set(run(backend, lambda s, _: s.roots()))
    assert {thread_id, neighbour} <= set(run(backend, lambda s, _: s.roots(LEGACY_HISTORY_ENTITY)))


def test_delete_removes_every_piece_of_the_thread_and_nothing_else(backend: AppBackend) -> None:
    thread_id = new_thread_id()
    neighbour = thread_id + "0"
    written = store_thread(backend, thread_id)
    store_thread(backend, neighbour)
    assert run(backend, lambda s, _: s.delete(thread_id, within_seconds=30)) == written
    assert run(backend, lambda s, _: s.pieces(thread_id)) == ([], [], [])
    assert thread_id not in run(backend, lambda s, _: s.roots())
    children, roots, legacy = run(backend, lambda s, _: s.pieces(neighbour))
    assert (len(children), len(roots), len(legacy)) == (4, 1, 1)
    assert run(backend, lambda s, _: s.delete(thread_id)) == 0  # a second delete finds nothing


def test_a_deletion_past_its_deadline_asks_for_the_delete_again(backend: AppBackend) -> None:
    thread_id = new_thread_id()
    write(backend, THREAD_ENTITY, thread_id, "init", {"created_at": T0, "agent": "a"})
    root = str(EntityInstanceId(THREAD_ENTITY, thread_id))
    with pytest.raises(BackendUnavailableError, match="still being deleted; send the DELETE again") as late:
        # Nothing was signalled, so the root stays; the deadline has passed.
        run(backend, lambda s, _: s._until_gone([root], time.monotonic() - 1))
    assert str(late.value).startswith("1 stored pieces")


def test_delete_thread_stops_the_thread_deletes_its_pieces_purges_it_and_tells_its_caller(
    backend: AppBackend,
) -> None:
    thread_id, caller = new_thread_id(), f"c-{uuid.uuid4().hex[:8]}"
    signal(backend, CALLER_ENTITY, caller, "thread_created")
    eventually(lambda: (state_of(backend, CALLER_ENTITY, caller) or {}).get("threads") == 1)
    store_thread(backend, thread_id)
    backend.client.schedule_new_orchestration(
        IDLE_ORCHESTRATION, input={"config": {"caller": caller}}, instance_id=thread_id
    )
    backend.client.wait_for_orchestration_start(thread_id, timeout=30)

    run(backend, lambda _, client: delete_thread(client, thread_id, within_seconds=30))

    assert backend.client.get_orchestration_state(thread_id) is None  # purged
    assert run(backend, lambda s, _: s.pieces(thread_id)) == ([], [], [])
    eventually(lambda: (state_of(backend, CALLER_ENTITY, caller) or {}).get("threads") == 0)
    run(backend, lambda _, client: delete_thread(client, thread_id))  # a repeat is a no-op


def test_delete_thread_of_a_finished_thread_purges_it_without_terminating(backend: AppBackend) -> None:
    thread_id = new_thread_id()
    backend.client.schedule_new_orchestration(IDLE_ORCHESTRATION, input="not a config", instance_id=thread_id)
    backend.client.wait_for_orchestration_start(thread_id, timeout=30)
    backend.client.terminate_orchestration(thread_id)
    done = backend.client.wait_for_orchestration_completion(thread_id, timeout=30)
    assert done is not None and done.runtime_status == OrchestrationStatus.TERMINATED
    store_thread(backend, thread_id)
    run(backend, lambda _, client: delete_thread(client, thread_id, within_seconds=30))
    assert backend.client.get_orchestration_state(thread_id) is None
    assert run(backend, lambda s, _: s.pieces(thread_id)) == ([], [], [])


@pytest.mark.parametrize(
    ("raw", "caller"),
    [
        ('{"config": {"caller": "c1"}}', "c1"),
        ('{"config": {"caller": 5}}', None),
        ('{"config": "c1"}', None),
        ('["c1"]', None),
        ("not json", None),
        ("", None),
        (None, None),
    ],
)
def test_the_caller_of_a_thread_is_read_from_its_input(raw: str | None, caller: str | None) -> None:
    assert store._caller_of(raw) == caller


# -- the maintenance sweep -----------------------------------------------------------------


def start_thread(backend: AppBackend, thread_id: str, updated_at: str | None) -> None:
    status = None
    if updated_at is not None:
        status = ThreadStatus(
            state="idle", turn=1, message_count=2, last_seq=3, updated_at=updated_at, agent="a"
        ).to_dict()
    backend.client.schedule_new_orchestration(
        IDLE_ORCHESTRATION, input={"status": status}, instance_id=thread_id
    )
    backend.client.wait_for_orchestration_start(thread_id, timeout=30)
    eventually(
        lambda: (
            status is None
            or (
                (s := backend.client.get_orchestration_state(thread_id)) is not None
                and s.serialized_custom_status is not None
            )
        )
    )


def pieces_of(backend: AppBackend, thread_id: str) -> tuple[list[str], list[str], list[str]]:
    return run(backend, lambda s, _: s.pieces(thread_id))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_sweep_deletes_orphans_and_threads_idle_past_retention(
    kind: str, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=maintenance.__name__)
    now = datetime.now(UTC)
    with app_backend(kind, tmp_path, BLUEPRINTS) as fresh:
        orphan, legacy_orphan = "orphan-1", "legacy-1"
        store_thread(fresh, orphan)  # storage, no orchestration
        legacy = {"id": "u1", "role": "user", "content": "old", "created_at": T0}
        write(fresh, LEGACY_HISTORY_ENTITY, legacy_orphan, "append", legacy)
        expired, expired_too, recent, unknown = "expired-1", "expired-2", "recent-1", "unknown-1"
        for thread_id, updated in (
            (expired, (now - timedelta(days=31)).isoformat().replace("+00:00", "Z")),
            (expired_too, (now - timedelta(days=400)).isoformat().replace("+00:00", "Z")),
            (recent, (now - timedelta(days=29)).isoformat().replace("+00:00", "Z")),
            (unknown, "not a time"),  # then the instance's own last update (now) counts
        ):
            store_thread(fresh, thread_id)
            start_thread(fresh, thread_id, updated)
        settings = dataclasses.replace(
            load_settings({}), thread_retention_days=30.0, maintenance_interval_seconds=120.0
        )

        result = run(fresh, lambda _, client: sweep(client, settings, now))

        assert result == SweepResult(orphans_deleted=2, expired_deleted=2, next_sweep_seconds=120.0)
        assert result.to_dict() == {"orphans_deleted": 2, "expired_deleted": 2, "next_sweep_seconds": 120.0}
        for gone in (orphan, legacy_orphan, expired, expired_too):
            assert pieces_of(fresh, gone) == ([], [], [])
        for gone in (expired, expired_too):
            assert fresh.client.get_orchestration_state(gone) is None
        for kept in (recent, unknown):
            children, roots, _ = pieces_of(fresh, kept)
            assert (len(children), len(roots)) == (4, 1)
            state = fresh.client.get_orchestration_state(kept)
            assert state is not None and state.runtime_status == OrchestrationStatus.RUNNING

        again = run(fresh, lambda _, client: sweep(client, settings, now))
        assert (again.orphans_deleted, again.expired_deleted) == (0, 0)
        said = [r.getMessage() for r in caplog.records if r.name == maintenance.__name__]
        assert said == ["maintenance: deleted 2 orphaned and 2 expired threads"]  # the empty pass is quiet


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_without_retention_the_sweep_deletes_only_orphans(kind: str, tmp_path: pathlib.Path) -> None:
    now = datetime.now(UTC)
    with app_backend(kind, tmp_path, BLUEPRINTS) as fresh:
        store_thread(fresh, "orphan-2")
        store_thread(fresh, "ancient-2")
        start_thread(fresh, "ancient-2", "2001-01-01T00:00:00Z")
        result = run(fresh, lambda _, client: sweep(client, load_settings({}), now))
        assert result == SweepResult(orphans_deleted=1, expired_deleted=0, next_sweep_seconds=3600.0)
        assert run(fresh, lambda s, _: s.pieces("orphan-2")) == ([], [], [])
        assert run(fresh, lambda s, _: s.exists(THREAD_ENTITY, "ancient-2"))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_maintenance_orchestration_sweeps_every_interval(
    kind: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the registered orchestration and activity, with the interval the activity reads
    monkeypatch.setenv("MAINTENANCE_INTERVAL_SECONDS", "0.5")
    get_settings.cache_clear()
    blueprints = (*BLUEPRINTS, sweep_activity.bp, maintenance_orchestration.bp)
    try:
        with app_backend(kind, tmp_path, blueprints) as fresh:
            store_thread(fresh, "orphan-3")
            fresh.client.schedule_new_orchestration(MAINTENANCE_ORCHESTRATION, instance_id="sweeper")
            passes: list[dict[str, Any]] = []

            def swept_twice() -> bool:
                state = fresh.client.get_orchestration_state("sweeper")
                if state is not None and state.serialized_custom_status:
                    status = json.loads(state.serialized_custom_status)
                    if not passes or passes[-1] != status:
                        passes.append(status)
                return len(passes) >= 2

            eventually(swept_twice)
            assert pieces_of(fresh, "orphan-3") == ([], [], [])
            first, second = passes[:2]
            assert {k: v for k, v in first.items() if k != "swept_at"} == {
                "orphans_deleted": 1,
                "expired_deleted": 0,
                "next_sweep_seconds": 0.5,
                "failed": False,
            }
            assert second["orphans_deleted"] == 0
            earlier, later = (datetime.fromisoformat(p["swept_at"]) for p in (first, second))
            assert timedelta(seconds=0.5) <= later - earlier
            state = fresh.client.get_orchestration_state("sweeper")
            assert state is not None and state.runtime_status == OrchestrationStatus.RUNNING
    finally:
        get_settings.cache_clear()


def test_a_failed_sweep_is_shown_and_tried_again_at_the_default_interval(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAINTENANCE_INTERVAL_SECONDS", "0.1")  # below the minimum: the activity fails
    get_settings.cache_clear()
    blueprints = (*BLUEPRINTS, sweep_activity.bp, maintenance_orchestration.bp)
    try:
        with app_backend("memory", tmp_path, blueprints) as fresh:
            fresh.client.schedule_new_orchestration(MAINTENANCE_ORCHESTRATION, instance_id="sweeper")
            fresh.client.wait_for_orchestration_start("sweeper", timeout=30)
            eventually(
                lambda: (
                    (s := fresh.client.get_orchestration_state("sweeper")) is not None
                    and s.serialized_custom_status is not None
                )
            )
            state = fresh.client.get_orchestration_state("sweeper")
            assert state is not None and state.serialized_custom_status is not None
            status = json.loads(state.serialized_custom_status)
            assert status.pop("swept_at").endswith("Z")
            assert status == {"failed": True, "next_sweep_seconds": 3600.0}
            assert state.runtime_status == OrchestrationStatus.RUNNING
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [("2026-12-03T06:00:00Z", datetime(2026, 12, 3, 6)), ("2026-12-03T06:00:00", datetime(2026, 12, 3, 6)),
     ("yesterday", None), ("", None), (None, None)],
)  # fmt: skip
def test_status_times_are_read_leniently(raw: str | None, parsed: datetime | None) -> None:
    assert maintenance._parse_time(raw) == parsed


@pytest.mark.parametrize(
    ("raw", "parsed"), [('{"a": 1}', {"a": 1}), ("{oops", None), ("", None), (None, None)]
)
def test_a_custom_status_that_is_not_json_reads_as_none(raw: str | None, parsed: object) -> None:
    assert maintenance._custom_status(raw) == parsed
