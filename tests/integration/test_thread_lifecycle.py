"""A thread's whole life in the task hub: continue-as-new, deletion, purge, retention.

Each scenario runs devhost on SQLite and checks the promise from outside: through the API,
and by scanning every table of the task hub file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import model_server as steps
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.harness import Api, DevhostProcess, wait_until
from tests.integration.taskhub_scan import rows_holding


def start(folder: Path, model: FakeModelServer, db: Path | None = None, **env: str) -> DevhostProcess:
    return DevhostProcess(
        folder / "devhost.log",
        backend="sqlite",
        db_path=db or folder / "taskhub.db",
        env={**model_env(model), **env},
    ).start()


@pytest.fixture(scope="module")
def host(fake_model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    devhost = start(tmp_path_factory.mktemp("lifecycle"), fake_model, MAINTENANCE_INTERVAL_SECONDS="1")
    yield devhost
    assert devhost.stop() == 0, devhost.log()


def talk(api: Api, thread_id: str, *contents: str) -> None:
    for content in contents:
        reply = api.post(f"/api/threads/{thread_id}/messages?wait=30", {"content": content})
        assert reply.status == 200 and reply.json["status"] == "answered", reply.body


def test_delete_leaves_no_row_with_the_thread_id_or_its_text(
    host: DevhostProcess, model: FakeModelServer
) -> None:
    api, db = host.api, host.db_path
    assert db is not None
    thread_id, marker = unique("gone"), unique("secret")
    assert api.post("/api/threads", {"thread_id": thread_id}).status == 201
    talk(api, thread_id, f"short {marker}", f"long {marker} " + "z" * 20_000, "third")
    assert rows_holding(db, marker), "the text is stored before the delete"
    assert api.delete(f"/api/threads/{thread_id}").status == 204
    assert rows_holding(db, thread_id) == []
    assert rows_holding(db, marker) == []
    assert api.get(f"/api/threads/{thread_id}").status == 404

    # the id is free, and a new thread with it starts empty
    assert api.post("/api/threads", {"thread_id": thread_id}).status == 201
    wait_until(lambda: api.get(f"/api/threads/{thread_id}/messages").json["messages"], what="system entry")
    page = api.get(f"/api/threads/{thread_id}/messages").json
    assert [m["role"] for m in page["messages"]] == ["system"]
    assert api.get(f"/api/threads/{thread_id}").json["message_count"] == 0


def test_a_management_purge_leaves_nothing_once_maintenance_sweeps(
    host: DevhostProcess, model: FakeModelServer
) -> None:
    api, db = host.api, host.db_path
    assert db is not None
    thread_id, marker = unique("purged"), unique("secret")
    assert api.post("/api/threads", {"thread_id": thread_id}).status == 201
    talk(api, thread_id, f"remember {marker}")
    management = f"/runtime/webhooks/durabletask/instances/{thread_id}"
    assert api.post(f"{management}/terminate").status == 202
    wait_until(lambda: api.get(management).json["runtimeStatus"] == "Terminated", what="terminated")
    assert api.delete(management).status == 200
    assert api.get(f"/api/threads/{thread_id}").status == 404
    # the history pages, blobs and message records went with the maintenance sweep
    wait_until(lambda: rows_holding(db, thread_id) == [], timeout=30, what="storage swept")
    assert rows_holding(db, marker) == []
    assert api.post("/api/threads", {"thread_id": thread_id}).status == 201


def test_deleted_entities_do_not_exist_for_the_management_api(
    host: DevhostProcess, model: FakeModelServer
) -> None:
    api = host.api
    thread_id = unique("ent")
    assert api.post("/api/threads", {"thread_id": thread_id}).status == 201
    talk(api, thread_id, "hello")
    page = f"/runtime/webhooks/durabletask/entities/history_page/{thread_id}~0"
    assert api.get(page).status == 200
    assert api.delete(f"/api/threads/{thread_id}").status == 204
    assert api.get(page).status == 404


def test_a_message_sent_while_the_thread_continues_as_new_is_answered(
    fake_model: FakeModelServer, model: FakeModelServer, tmp_path: Path
) -> None:
    # A small cap makes one large turn fill a generation, so the thread continues as new
    # right after it, while the second message is already waiting.
    devhost = start(tmp_path, fake_model, PAYLOAD_CAP_BYTES="65536", CONTEXT_WINDOW_BYTES="20000")
    try:
        api = devhost.api
        assert api.post("/api/threads", {"thread_id": "can"}).status == 201
        model.enqueue(steps.reply("first", delay=0.5))
        first = api.post("/api/threads/can/messages", {"content": "big " + "x" * 30_000})
        wait_until(lambda: api.get("/api/threads/can").json["state"] == "thinking", what="thinking")
        before = api.get("/api/threads/can").json
        assert before["generation"] == 0 and before["turn"] == 1
        second = api.post("/api/threads/can/messages?wait=30", {"content": "two"})
        assert second.status == 200 and second.json["reply"]["content"] == "echo: two"
        after = api.get("/api/threads/can").json
        assert after["generation"] >= 1 and after["turn"] == 2  # carried over into a new generation
        answered = api.get(f"/api/threads/can/messages/{first.json['message_id']}").json
        assert answered["status"] == "answered" and answered["reply"]["content"] == "first"
        seqs = [m["seq"] for m in api.get("/api/threads/can/messages").json["messages"]]
        assert seqs == [1, 2, 3, 4, 5]
    finally:
        assert devhost.stop() == 0, devhost.log()


def test_retention_deletes_an_idle_thread_completely(
    fake_model: FakeModelServer, model: FakeModelServer, tmp_path: Path
) -> None:
    devhost = start(
        tmp_path, fake_model, THREAD_RETENTION_DAYS=str(2 / 86_400), MAINTENANCE_INTERVAL_SECONDS="1"
    )
    try:
        api, db = devhost.api, devhost.db_path
        assert db is not None
        marker = unique("secret")
        assert api.post("/api/threads", {"thread_id": "short-lived"}).status == 201
        talk(api, "short-lived", f"forget {marker}")
        idle_since = time.monotonic()
        wait_until(lambda: api.get("/api/threads/short-lived").status == 404, timeout=30, what="expiry")
        assert time.monotonic() - idle_since >= 1.5  # not before it was idle for the retention
        wait_until(lambda: rows_holding(db, "short-lived") == [], timeout=30, what="storage deleted")
        assert rows_holding(db, marker) == []
    finally:
        assert devhost.stop() == 0, devhost.log()
