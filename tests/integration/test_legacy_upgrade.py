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
        listed = {t["thread_id"] for t in api.get("/api/threads?limit=50").json["threads"]}
        assert {"legacy-talk", "legacy-empty", "legacy-failed"} <= listed
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
