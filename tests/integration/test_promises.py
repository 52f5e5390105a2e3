"""README promises that need their own scenario: ids are answered once forever, responses
never carry management URLs, a thread without a model records errors naming the settings."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from agent.thread import RECENT_IDS_KEPT
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.harness import Api, wait_until
from tests.integration.in_process import new_devhost


def test_a_message_id_is_answered_once_even_long_after_the_recent_window(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    first = unique()
    assert (
        api.post(
            f"/api/threads/{thread_id}/messages?wait=30", {"content": "first", "message_id": first}
        ).status
        == 200
    )
    for i in range(RECENT_IDS_KEPT + 3):
        api.post(f"/api/threads/{thread_id}/messages", {"content": f"filler {i}"})

    def all_answered() -> bool:
        thread = api.get(f"/api/threads/{thread_id}").json
        return bool(thread["turn"] == RECENT_IDS_KEPT + 4 and thread["state"] == "idle")

    wait_until(all_answered, timeout=120, what="fillers answered")
    asked = len(model.requests)
    again = api.post(f"/api/threads/{thread_id}/messages?wait=5", {"content": "first", "message_id": first})
    assert again.status == 200 and again.json["reply"]["content"] == "echo: first"
    assert api.post(f"/api/threads/{thread_id}/messages?wait=30", {"content": "last"}).status == 200
    assert len(model.requests) == asked + 1  # only "last" reached the model
    users = [
        m["id"]
        for m in api.get(f"/api/threads/{thread_id}/messages?limit=5").json["messages"]
        if m["role"] == "user"
    ]
    assert users.count(first) == 1


MANAGEMENT = re.compile(
    r"runtime/webhooks|statusQueryGetUri|sendEventPostUri|terminatePostUri|purgeHistoryDeleteUri"
)


def test_no_response_carries_a_management_url(api: Api, model: FakeModelServer) -> None:
    bodies = []
    created = api.post("/api/threads", {})
    bodies.append(created.body)
    thread_id = created.json["thread_id"]
    for reply in (
        api.post(f"/api/threads/{thread_id}/messages?wait=30", {"content": "hi", "message_id": "p1"}),
        api.post(f"/api/threads/{thread_id}/messages", {"content": "again"}),
        api.get(f"/api/threads/{thread_id}"),
        api.get(f"/api/threads/{thread_id}/messages"),
        api.get(f"/api/threads/{thread_id}/messages/p1"),
        api.get(f"/api/threads/{thread_id}/events?timeout=0"),
        api.get(f"/api/threads/{thread_id}/notes"),
        api.get("/api/threads"),
        api.get("/api/agents"),
        api.get("/api/health"),
        api.post("/api/agents/assistant/run", {"message": "x"}),
        api.post("/api/threads/none-such/messages", {"content": "x"}),
    ):
        bodies.append(reply.body)
        assert not any(MANAGEMENT.search(v) for v in reply.headers.values()), reply.headers
    for body in bodies:
        assert not MANAGEMENT.search(body.decode()), body[:300]


def test_without_a_model_turns_record_errors_naming_the_settings(
    fake_model: FakeModelServer, tmp_path: Path
) -> None:
    env = {**model_env(fake_model), "OPENAI_BASE_URL": "", "OPENAI_MODEL": "", "OPENAI_API_KEY": ""}
    host = new_devhost(tmp_path / "devhost.log", backend="memory", env=env)
    host.extra_args = ["--no-local-model"]
    host.start()
    try:
        assert host.api.get("/api/health").json["model_configured"] is False
        created = host.api.post("/api/threads", {}).json["thread_id"]
        failed = host.api.post(f"/api/threads/{created}/messages?wait=30", {"content": "anyone?"}).json
        error = failed["reply"]["error"]
        assert failed["status"] == "failed" and error["code"] == "model_not_configured"
        assert "AZURE_OPENAI_ENDPOINT" in error["message"] and "OPENAI_MODEL" in error["message"]
        assert "no model is configured" in host.log()  # the warmup warned at start
    finally:
        assert host.stop() == 0


def test_a_finished_turn_stays_visible_in_the_orchestration_history(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    assert api.post(f"/api/threads/{thread_id}/messages?wait=30", {"content": "visible?"}).status == 200
    status = api.get(
        f"/runtime/webhooks/durabletask/instances/{thread_id}?showHistory=true&showHistoryOutput=true"
    )
    events = status.json["historyEvents"]
    names = [(e.get("EventType"), e.get("FunctionName") or e.get("Name")) for e in events]
    assert ("TaskCompleted", "call_model") in names, names  # the turn's model call, with its result
    assert any(e.get("EventType") == "EventRaised" for e in events)  # the message that started it


def test_a_bad_setting_stops_devhost_with_one_line(fake_model: FakeModelServer, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.integration.harness import REPO, free_port

    env = {**os.environ, **model_env(fake_model), "MODEL_TIMEOUT_SECONDS": "abc"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "devhost",
            "--app",
            str(REPO),
            "--backend",
            "memory",
            "--port",
            str(free_port()),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    last = (done.stdout + done.stderr).strip().splitlines()[-1]
    assert "MODEL_TIMEOUT_SECONDS" in last and "abc" in last


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_the_durability_flag_reaches_the_sqlite_hub(
    fake_model: FakeModelServer, tmp_path: Path, durability: str
) -> None:
    host = new_devhost(
        tmp_path / "devhost.log", backend="sqlite", db_path=tmp_path / "t.db", env=model_env(fake_model)
    )
    host.extra_args = ["--durability", durability]
    host.start()
    try:
        assert f"(durability={durability})" in host.log()
    finally:
        assert host.stop() == 0
