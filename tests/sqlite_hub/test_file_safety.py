"""File safety: private modes, no deleted text left in the file, one hub per file whatever its name."""

from __future__ import annotations

import fcntl
import os
import pathlib
import stat
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from google.protobuf import wrappers_pb2

from devhost.sqlite_hub import SqliteSidecar
from devhost.sqlite_hub.files import OwnerLock, tighten
from devhost.sqlite_hub.storage import HubInUseError, Storage
from tests.sqlite_hub.protocol.raw import RawStream


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Modes must not depend on the umask: run with one that would leave everything open."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_new_folders_are_0700_and_hub_files_0600(tmp_path: pathlib.Path, permissive_umask: None) -> None:
    tmp_path.chmod(0o755)
    db = tmp_path / ".devhost" / "deeper" / "taskhub.db"
    hub = SqliteSidecar(db)
    hub.start()
    try:
        assert mode(tmp_path) == 0o755  # a folder that existed is left alone
        assert mode(tmp_path / ".devhost") == 0o700
        assert mode(db.parent) == 0o700
        for name in ("taskhub.db", "taskhub.db-wal", "taskhub.db-shm", "taskhub.db.owner"):
            assert mode(db.parent / name) == 0o600, name
    finally:
        hub.stop()


def test_existing_loose_hub_files_are_tightened(tmp_path: pathlib.Path, permissive_umask: None) -> None:
    db = tmp_path / "taskhub.db"
    hub = SqliteSidecar(db)
    hub.start()
    hub.stop()
    for name in ("taskhub.db", "taskhub.db.owner"):
        (tmp_path / name).chmod(0o644)
    for name in ("taskhub.db-wal", "taskhub.db-shm"):  # left by a crash, with a loose mode
        (tmp_path / name).touch(0o644)
        (tmp_path / name).chmod(0o644)
    hub = SqliteSidecar(db)
    hub.start()
    try:
        for name in ("taskhub.db", "taskhub.db-wal", "taskhub.db-shm", "taskhub.db.owner"):
            assert mode(tmp_path / name) == 0o600, name
    finally:
        hub.stop()


SECRET = "zebra-quartz-" + "7" * 40  # distinctive text, easy to find in raw bytes


def run_entity_batch(stub: Any, stream: RawStream, op: str, state: str | None) -> None:
    stub.SignalEntity(
        pb.SignalEntityRequest(
            instanceId="@notes@k", name=op, requestId=op, input=wrappers_pb2.StringValue(value=f'"{SECRET}"')
        )
    )
    item = stream.next()
    stub.CompleteEntityTask(
        pb.EntityBatchResult(
            completionToken=item.completionToken,
            results=[pb.OperationResult(success=pb.OperationResultSuccess())],
            entityState=wrappers_pb2.StringValue(value=state) if state is not None else None,
        )
    )


def test_deleted_text_does_not_linger_in_the_file(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "taskhub.db"
    hub = SqliteSidecar(db)
    hub.start()
    try:
        with grpc.insecure_channel(hub.address) as channel:
            stub: Any = stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
            stream = RawStream(stub)
            try:
                run_entity_batch(stub, stream, "set", f'"{SECRET}"')
                with hub.storage.read() as conn:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                # The test can see the text when it is there...
                assert SECRET.encode() in db.read_bytes()
                run_entity_batch(stub, stream, "delete", None)
            finally:
                stream.close()
            assert not stub.GetEntity(pb.GetEntityRequest(instanceId="@notes@k")).exists
    finally:
        hub.stop()  # a clean stop checkpoints the WAL into the file and truncates it
    # ...and once the entity is deleted it is gone from every byte of the file.
    assert SECRET.encode() not in db.read_bytes()
    wal = tmp_path / "taskhub.db-wal"
    assert not wal.exists() or SECRET.encode() not in wal.read_bytes()


@pytest.fixture
def serving(tmp_path: pathlib.Path) -> Iterator[SqliteSidecar]:
    hub = SqliteSidecar(tmp_path / "data" / "taskhub.db")
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


def other_names(db: pathlib.Path, tmp_path: pathlib.Path) -> dict[str, pathlib.Path]:
    symlink = tmp_path / "alias.db"
    symlink.symlink_to(db)
    folder_link = tmp_path / "linked-folder"
    folder_link.symlink_to(db.parent, target_is_directory=True)
    hard = tmp_path / "hard.db"
    os.link(db, hard)
    return {
        "symlink": symlink,
        "symlinked folder": folder_link / db.name,
        "hard link": hard,
        "dotted path": db.parent / ".." / db.parent.name / db.name,
    }


def test_a_second_hub_on_any_other_name_of_the_file_is_refused(
    serving: SqliteSidecar, tmp_path: pathlib.Path
) -> None:
    for label, path in other_names(serving.db_path, tmp_path).items():
        second = SqliteSidecar(path)
        with pytest.raises(HubInUseError, match="already served by another task hub") as refused:
            second.start()
        assert str(path) in str(refused.value), label
        assert second.storage._conn is None, label
    # The refused attempts left the serving hub's lock alone.
    with pytest.raises(HubInUseError, match=f"pid {os.getpid()}"):
        SqliteSidecar(serving.db_path).start()


def test_the_file_is_free_again_after_stop(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "taskhub.db"
    first = SqliteSidecar(db)
    first.start()
    first.stop()
    alias = tmp_path / "alias.db"
    alias.symlink_to(db)
    second = SqliteSidecar(alias)
    second.start()
    try:
        assert second.integrity_check() == "ok"
    finally:
        second.stop()


def test_a_hub_file_of_another_user_keeps_its_mode(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, permissive_umask: None
) -> None:
    """chmod on another user's file fails (EPERM); the hub leaves such a file as it is."""
    loose = tmp_path / "taskhub.db-wal"
    loose.touch(0o644)
    owner = os.stat(loose).st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    tighten(loose)
    assert mode(loose) == 0o644
    monkeypatch.setattr(os, "geteuid", lambda: owner)
    tighten(loose)
    assert mode(loose) == 0o600


def test_a_private_hub_file_is_not_touched(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No metadata write when nothing needs changing (a read-only mount would refuse it)."""
    private = tmp_path / "taskhub.db"
    private.touch(0o600)
    private.chmod(0o600)
    changed: list[object] = []
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: changed.append(args))
    tighten(private)
    tighten(tmp_path / "missing.db")
    assert changed == []


def test_the_owner_lock_can_be_released_twice_and_taken_again(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "taskhub.db"
    lock = OwnerLock(db)
    lock.acquire(db)
    lock.release()
    lock.release()  # a refused start releases, then its caller's cleanup releases again
    again = OwnerLock(db)
    again.acquire(db)
    try:
        assert (tmp_path / "taskhub.db.owner").read_text(encoding="utf-8") == str(os.getpid())
    finally:
        again.release()


def test_a_hub_file_locked_without_an_owner_record_names_no_pid(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "taskhub.db"
    with db.open("a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process's lock, no .owner file
        with pytest.raises(HubInUseError) as refused:
            SqliteSidecar(db).start()
    assert str(refused.value) == (
        f"{db} is already served by another task hub (pid unknown); stop it or use another database"
    )


def test_storage_closes_safely_when_never_opened_and_when_closed_twice(tmp_path: pathlib.Path) -> None:
    never = Storage(tmp_path / "never.db")
    never.close()
    opened = Storage(tmp_path / "opened.db")
    opened.open()
    opened.close()
    opened.close()
    again = Storage(tmp_path / "opened.db")  # the file is free again
    again.open()
    again.close()
