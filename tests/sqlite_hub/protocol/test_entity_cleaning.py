"""CleanEntityStorage on the SQLite hub: orphaned locks, empty rows, counts and continuation.

Empty rows cannot be made through the protocol any more (deleted entities do not exist),
so these tests write the rows an older hub (schema 1) or a lost lock owner would leave,
straight into the real database file.
"""

from __future__ import annotations

import pathlib
import sqlite3
from typing import Any

import grpc
import pytest
from durabletask.client import TaskHubGrpcClient
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs

from devhost.sqlite_hub import SqliteSidecar, entities
from tests.sqlite_hub.protocol.raw import RawStream, complete_action, start

ROWS = [
    # (entity_id, state, locked_by, lock_owner)
    ("@ctr@a-empty", None, None, None),  # empty: removed
    ("@ctr@b-orphan", None, "cs-x", "ghost"),  # orphaned lock, no state: released, then removed
    ("@ctr@c-orphan-state", "7", "cs-y", "ghost"),  # orphaned lock with state: released, kept
    ("@ctr@d-live", None, "cs-live", "owner"),  # lock held by a live orchestration: kept
    ("@ctr@e-queued", None, None, None),  # an operation is queued for it: kept
    ("@ctr@f-state", "3", None, None),  # plain entity with state: kept
]


def seed(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT INTO entities (entity_id, state, last_modified, locked_by, lock_owner)"
        " VALUES (?, ?, 0, ?, ?)",
        ROWS,
    )
    conn.execute(
        "INSERT INTO entity_inbox (entity_id, event, visible_at) VALUES ('@ctr@e-queued', x'', 1e12)"
    )


def ids(sidecar: SqliteSidecar) -> list[str]:
    with sidecar.storage.read() as conn:
        return [r[0] for r in conn.execute("SELECT entity_id FROM entities ORDER BY entity_id")]


def test_clean_releases_orphans_and_removes_empty_rows_across_pages(
    stub: Any, sidecar: SqliteSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(stub, "owner")  # PENDING: a live lock owner
    with sidecar.storage.write() as conn:
        seed(conn)
    monkeypatch.setattr(entities, "CLEAN_PAGE", 2)
    first = stub.CleanEntityStorage(
        pb.CleanEntityStorageRequest(removeEmptyEntities=True, releaseOrphanedLocks=True)
    )
    # The first page covers a-empty and b-orphan and says where to go on.
    assert (first.emptyEntitiesRemoved, first.orphanedLocksReleased) == (2, 1)
    assert first.continuationToken.value == "@ctr@b-orphan"
    client = TaskHubGrpcClient(host_address=sidecar.address)
    try:
        rest = client.clean_entity_storage(remove_empty_entities=True, release_orphaned_locks=True)
    finally:
        client.close()
    assert (rest.empty_entities_removed, rest.orphaned_locks_released) == (0, 1)
    assert ids(sidecar) == ["@ctr@c-orphan-state", "@ctr@d-live", "@ctr@e-queued", "@ctr@f-state"]
    kept = stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@c-orphan-state", includeState=True))
    assert kept.exists and kept.entity.serializedState.value == "7" and not kept.entity.HasField("lockedBy")
    live = stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@d-live"))
    assert live.exists and live.entity.lockedBy.value == "cs-live"


def test_releasing_an_orphaned_lock_alone_still_deletes_the_emptied_entity(
    stub: Any, sidecar: SqliteSidecar
) -> None:
    start(stub, "owner")
    with sidecar.storage.write() as conn:
        seed(conn)
    res = stub.CleanEntityStorage(pb.CleanEntityStorageRequest(releaseOrphanedLocks=True))
    assert (res.emptyEntitiesRemoved, res.orphanedLocksReleased) == (0, 2)
    assert not res.HasField("continuationToken")
    # b-orphan went with its lock (uncounted); a-empty stays until empty rows are removed.
    assert "@ctr@b-orphan" not in ids(sidecar) and "@ctr@a-empty" in ids(sidecar)
    res = stub.CleanEntityStorage(pb.CleanEntityStorageRequest(removeEmptyEntities=True))
    assert (res.emptyEntitiesRemoved, res.orphanedLocksReleased) == (1, 0)
    assert not stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@a-empty")).exists


def test_upgrade_drops_empty_rows_an_older_hub_kept(tmp_path: pathlib.Path) -> None:
    hub = SqliteSidecar(tmp_path / "taskhub.db")
    hub.start()
    hub.stop()
    conn = sqlite3.connect(hub.db_path)
    with conn:
        seed(conn)
        conn.execute("PRAGMA user_version = 1")  # as written by a schema-1 hub
    conn.close()
    hub = SqliteSidecar(tmp_path / "taskhub.db")
    hub.start()
    try:
        remaining = ids(hub)
        assert "@ctr@a-empty" not in remaining
        assert remaining == [r[0] for r in ROWS if r[0] != "@ctr@a-empty"]
        with grpc.insecure_channel(hub.address) as channel:
            stub: Any = stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
            assert not stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@a-empty")).exists
    finally:
        hub.stop()


def test_a_lock_whose_owner_has_finished_is_orphaned(stub: Any, sidecar: SqliteSidecar) -> None:
    start(stub, "finished-owner")
    stream = RawStream(stub)
    try:
        item = stream.next()
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="finished-owner", completionToken=item.completionToken, actions=[complete_action()]
            )
        )
    finally:
        stream.close()
    with sidecar.storage.write() as conn:
        conn.execute(
            "INSERT INTO entities (entity_id, state, last_modified, locked_by, lock_owner)"
            " VALUES ('@ctr@g-held', '5', 0, 'cs-z', 'finished-owner')"
        )
    cleaned = stub.CleanEntityStorage(pb.CleanEntityStorageRequest(releaseOrphanedLocks=True))
    assert (cleaned.emptyEntitiesRemoved, cleaned.orphanedLocksReleased) == (0, 1)
    held = stub.GetEntity(pb.GetEntityRequest(instanceId="@ctr@g-held", includeState=True))
    assert held.entity.serializedState.value == "5" and not held.entity.HasField("lockedBy")


def test_a_cleaning_page_goes_on_after_its_last_entity(
    stub: Any, sidecar: SqliteSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(stub, "owner")
    with sidecar.storage.write() as conn:
        seed(conn)
    monkeypatch.setattr(entities, "CLEAN_PAGE", 3)
    first = stub.CleanEntityStorage(pb.CleanEntityStorageRequest())
    assert first.continuationToken.value == "@ctr@c-orphan-state"  # the third of six
    rest = stub.CleanEntityStorage(pb.CleanEntityStorageRequest(continuationToken=first.continuationToken))
    assert not rest.HasField("continuationToken")  # the other three: the end
