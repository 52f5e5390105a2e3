"""A task hub written before paged storage: its threads read correctly and migrate.

The fixture is a SQLite task hub from commit c39cc49 (threads with their whole history in
the orchestration input and a legacy history entity). devhost serves it as it is; the next
message to a thread migrates it to paged storage. In its own module so that it can run with
devhost in the test process (DEVHOST_IN_PROCESS=1, for mutation testing) without sharing
the process with another host's settings.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from durabletask.client import TaskHubGrpcClient

from agent.contract import THREAD_ORCHESTRATION
from devhost.sqlite_hub import SqliteSidecar
from tests.fakes import model_steps as steps
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env
from tests.integration.harness import Api, wait_until
from tests.integration.in_process import new_devhost
from tests.integration.taskhub_scan import entity_ids, rows_holding

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_taskhub_c39cc49.db"


def talk(api: Api, thread_id: str, *contents: str) -> None:
    for content in contents:
        reply = api.post(f"/api/threads/{thread_id}/messages?wait=30", {"content": content})
        assert reply.status == 200 and reply.json["status"] == "answered", reply.body


def test_a_task_hub_from_before_paging_reads_correctly_and_migrates_on_the_next_message(
    fake_model: FakeModelServer, model: FakeModelServer, tmp_path: Path
) -> None:
    db = tmp_path / "taskhub.db"
    shutil.copyfile(FIXTURE, db)
    devhost = new_devhost(
        tmp_path / "devhost.log", backend="sqlite", db_path=db, env=model_env(fake_model)
    ).start()
    try:
        api = devhost.api
        summaries = {t["thread_id"]: t for t in api.get("/api/threads?limit=50").json["threads"]}
        assert {"legacy-talk", "legacy-empty", "legacy-failed"} <= set(summaries)
        assert all(isinstance(t["message_count"], int) for t in summaries.values())
        talk_thread = api.get("/api/threads/legacy-talk").json
        assert "turn" in talk_thread, (talk_thread, devhost.log()[-3000:])
        assert talk_thread["turn"] == 3 and talk_thread["message_count"] == 6
        assert talk_thread["metadata"] == {"user": "ada"} and talk_thread["state"] == "idle"
        old = api.get("/api/threads/legacy-talk/messages").json["messages"]
        assert [(m["seq"], m["role"]) for m in old] == [(1, "system")] + [
            (s, "user" if s % 2 == 0 else "assistant") for s in range(2, 8)
        ]
        assert old[3]["content"] == "Second message é ✓"
        reply = api.get("/api/threads/legacy-talk/messages/lm2").json
        assert reply["status"] == "answered" and reply["reply"]["content"] == "echo: Second message é ✓"

        # a thread from before tools has no approvals to decide
        refused = api.post("/api/threads/legacy-talk/approvals/call-1", {"approve": True})
        assert (refused.status, refused.json["code"]) == (404, "not_found"), refused.body

        # the next message migrates the thread: numbering continues, the model sees the past
        talk(api, "legacy-talk", "Do you remember me?")
        assert "Hello there" in [m["content"] for m in model.requests[-1].messages]
        new = api.get("/api/threads/legacy-talk/messages").json["messages"]
        assert [m["seq"] for m in new] == list(range(1, 10))
        assert new[:7] == old
        migrated = api.get("/api/threads/legacy-talk").json
        assert migrated["turn"] == 4 and migrated["metadata"] == {"user": "ada"}, migrated
        reply_entry = new[8]
        assert reply_entry["reply_to"] == new[7]["id"] and reply_entry["finish_reason"] == "stop"
        assert set(reply_entry["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
        assert api.get("/api/threads/legacy-talk").json["message_count"] == 8
        wait_until(lambda: "@history@legacy-talk" not in entity_ids(db), what="legacy entity removed")
        assert (
            api.post(
                "/api/threads/legacy-talk/messages?wait=5", {"content": "Hello there", "message_id": "lm1"}
            ).json["reply"]["content"]
            == "echo: Hello there"
        )  # an old id still answers once

        talk(api, "legacy-empty", "first words")
        assert [m["role"] for m in api.get("/api/threads/legacy-empty/messages").json["messages"]] == [
            "system",
            "user",
            "assistant",
        ]
        assert api.delete("/api/threads/legacy-failed").status == 204
        assert rows_holding(db, "legacy-failed") == []
    finally:
        assert devhost.stop() == 0, devhost.log()


T0 = "2025-03-01T10:00:00.000Z"


def old_input(**changes: Any) -> dict[str, Any]:
    """An orchestration input as the code before paging wrote it (no `schema`)."""
    return {
        "turn": 2,
        "recent_ids": ["old-1"],
        "last_message_id": "old-1",
        "last_state": "idle",
        "initialized": False,
        "created_at": T0,
        "system_prompt": "Be brief.",
        "context_window_bytes": 48_000,
        "metadata": {"team": "blue"},
        "owner": None,
    } | changes


def start_old_threads(db: Path, threads: dict[str, dict[str, Any]]) -> None:
    """Starts threads the way the old code did, on the hub file devhost will serve next."""
    hub = SqliteSidecar(db)
    hub.start()
    try:
        client = TaskHubGrpcClient(host_address=hub.address)
        for thread_id, data in threads.items():
            client.schedule_new_orchestration(THREAD_ORCHESTRATION, input=data, instance_id=thread_id)
    finally:
        hub.stop()


def test_old_threads_answer_skip_or_fail_their_last_old_message_and_migrate_with_their_settings(
    fake_model: FakeModelServer, model: FakeModelServer, tmp_path: Path
) -> None:
    db = tmp_path / "taskhub.db"
    start_old_threads(
        db,
        {
            "old-ok": old_input(turn=0, recent_ids=[], last_message_id=None, context_window_bytes=700),
            "old-dup": old_input(last_state="error"),  # its last old turn had failed
            "old-bad": old_input(),
            "old-fail": old_input(),
        },
    )
    devhost = new_devhost(
        tmp_path / "devhost.log", backend="sqlite", db_path=db, env=model_env(fake_model)
    ).start()
    try:
        api = devhost.api
        raise_url = "/runtime/webhooks/durabletask/instances/{}/raiseEvent/user_message"

        def migrated(thread_id: str) -> None:
            wait_until(
                lambda: f"@history@{thread_id}" not in entity_ids(db),
                timeout=15,
                what=f"{thread_id} migrated",
            )

        for thread_id in ("old-ok", "old-dup", "old-bad", "old-fail"):
            wait_until(
                lambda thread_id=thread_id: api.get(f"/api/threads/{thread_id}").status == 200,
                what=f"{thread_id} readable",
            )

        assert api.get("/api/threads/old-dup").json["state"] == "error"  # read from the old status
        # A message the old code had answered already, and one it could not read: the old
        # generation skips them and the thread migrates without a model call or a turn.
        repeated = api.request(
            "POST", raise_url.format("old-dup"), raw=b'{"id": "old-1", "content": "again"}'
        )
        malformed = api.request(
            "POST", raise_url.format("old-bad"), raw=b'{"id": "not ok!", "content": "hi"}'
        )
        assert (repeated.status, malformed.status) == (202, 202)
        for thread_id in ("old-dup", "old-bad"):
            migrated(thread_id)
            # the thread's root entity, by which the maintenance sweep finds paged threads
            wait_until(
                lambda thread_id=thread_id: f"@thread@{thread_id}" in entity_ids(db), what=f"{thread_id} root"
            )
            thread = api.get(f"/api/threads/{thread_id}").json
            assert (thread["turn"], thread["metadata"]) == (2, {"team": "blue"}), thread
            assert thread["created_at"] == T0, thread
            messages = api.get(f"/api/threads/{thread_id}/messages").json["messages"]
            assert [(m["role"], m["content"]) for m in messages] == [("system", "Be brief.")]
        assert model.requests == []
        talk(api, "old-bad", "now readable")
        assert api.get("/api/threads/old-bad").json["turn"] == 3

        # A failed model call in the old generation is recorded as the old code did.
        model.enqueue(steps.error(400, message="rejected by the test"))
        failed = api.post(
            "/api/threads/old-fail/messages?wait=30", {"content": "this fails", "message_id": "f1"}
        )
        assert failed.status == 200 and failed.json["status"] == "failed", failed.body
        assert failed.json["reply"]["error"]["code"] == "model_rejected"
        assert failed.json["reply"]["error"]["retryable"] is False
        migrated("old-fail")
        assert api.get("/api/threads/old-fail").json["state"] == "error"  # as a failed turn leaves a thread
        entries = api.get("/api/threads/old-fail/messages").json["messages"]
        error_entry = entries[-1]
        assert error_entry["reply_to"] == "f1" and error_entry["content"] == ""
        assert error_entry["error"]["code"] == "model_rejected"
        assert api.get("/api/threads/old-fail").json["turn"] == 3

        # A thread at turn 0 answers its first message the old way; its small context window
        # still applies once migrated.
        # two earlier entries in the old history: the old turn's window (700 bytes) keeps the later
        for n, text in enumerate(("x" * 300, "y" * 300), 1):
            entry = {
                "id": f"early-{n}",
                "role": "user",
                "content": text,
                "created_at": "2025-03-01T10:00:00.000Z",
            }
            appended = api.post("/runtime/webhooks/durabletask/entities/history/old-ok?op=append", entry)
            assert appended.status == 202, appended.body
        wait_until(
            lambda: len(api.get("/api/threads/old-ok/messages").json["messages"]) == 3,
            what="the early entries",
        )
        talk(api, "old-ok", "a" * 300)
        assert "thread old-ok turn 1: model" in devhost.log()
        old_turn = [m["content"] for m in model.requests[-1].messages]
        assert old_turn[-1] == "a" * 300 and "y" * 300 in old_turn and "x" * 300 not in old_turn
        migrated("old-ok")
        assert api.get("/api/threads/old-ok").json["turn"] == 1
        talk(api, "old-ok", "b" * 300, "c" * 300)
        sent = [m["content"] for m in model.requests[-1].messages]
        assert sent[0] == "Be brief." and sent[-1] == "c" * 300
        assert "a" * 300 not in sent  # beyond the thread's 700-byte window
    finally:
        assert devhost.stop() == 0, devhost.log()
