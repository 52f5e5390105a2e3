"""State survives devhost restarts on the SQLite task hub: conversations and durable timers."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.harness import DevhostProcess, wait_until
from tests.integration.test_devhost import SAMPLE


def test_a_conversation_continues_after_a_restart(tmp_path: Path, model: FakeModelServer) -> None:
    db = tmp_path / "hub.db"
    first = DevhostProcess(tmp_path / "a.log", backend="sqlite", db_path=db, env=model_env(model)).start()
    thread = unique("restart")
    try:
        assert first.api.post("/api/threads", {"thread_id": thread}).status == 201
        assert (
            first.api.post(f"/api/threads/{thread}/messages?wait=30", {"content": "remember 42"}).status
            == 200
        )
    finally:
        assert first.stop() == 0

    second = DevhostProcess(tmp_path / "b.log", backend="sqlite", db_path=db, env=model_env(model)).start()
    try:
        reply = second.api.post(f"/api/threads/{thread}/messages?wait=30", {"content": "what number?"})
        assert reply.status == 200 and reply.json["reply"]["content"] == "echo: what number?"
        sent = [m["content"] for m in model.requests[-1].messages]
        assert sent[1:] == ["remember 42", "echo: remember 42", "what number?"]
        assert second.api.get(f"/api/threads/{thread}").json["turn"] == 2
    finally:
        assert second.stop() == 0


def test_a_durable_timer_set_before_a_restart_fires_after_it_on_time(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    first = DevhostProcess(tmp_path / "a.log", backend="sqlite", db_path=db, app_dir=SAMPLE).start()
    try:
        started = first.api.post("/v1/sleep/4")
        assert started.status == 202
        status_path = started.json["statusQueryGetUri"][len(first.api.base_url) :]
        wait_until(lambda: first.api.get(status_path).json["runtimeStatus"] == "Running", what="timer set")
    finally:
        assert first.stop() == 0
    stopped_at = time.time()

    second = DevhostProcess(tmp_path / "b.log", backend="sqlite", db_path=db, app_dir=SAMPLE).start()
    ready_at = time.time()
    try:
        assert second.api.get(status_path).json["runtimeStatus"] == "Running"  # not fired early
        done = wait_until(
            lambda: (r := second.api.get(status_path)).status == 200 and r.json,
            timeout=30,
            what="timer to fire",
        )
        completed_at = time.time()
    finally:
        assert second.stop() == 0
    assert done["runtimeStatus"] == "Completed"
    fire_at = datetime.fromisoformat(done["output"]["fire_at"]).replace(tzinfo=UTC).timestamp()
    woke_at = datetime.fromisoformat(done["output"]["woke_at"]).replace(tzinfo=UTC).timestamp()
    assert woke_at >= fire_at  # never early
    # "On time" is the behaviour under test, so this one keeps a wall-clock bound. It is
    # counted from when the timer could first fire: its due time, or devhost being ready
    # again if that came later (a slow start on a loaded machine is not the timer's fault).
    # A hub that missed the due timer would sleep until an idle stream's next health ping
    # (HEALTH_PING_SECONDS, 30 s); prompt delivery takes well under 1 s. 10 s sits between.
    assert completed_at - max(fire_at, ready_at) < 10.0, "fired promptly once due"
    assert stopped_at < fire_at  # the timer really was pending while devhost was down


def test_a_second_devhost_on_the_same_database_is_refused(tmp_path: Path, model: FakeModelServer) -> None:
    db = tmp_path / "hub.db"
    first = DevhostProcess(tmp_path / "a.log", backend="sqlite", db_path=db, env=model_env(model)).start()
    try:
        second = DevhostProcess(tmp_path / "b.log", backend="sqlite", db_path=db, env=model_env(model))
        with contextlib.suppress(RuntimeError):  # it exits instead of becoming ready
            second.start(timeout=20)
        assert second.process is not None and second.process.wait(10) == 2
        assert "already served by another task hub" in second.log()
        assert "Traceback" not in second.log()
        assert first.api.get("/api/health").status == 200
    finally:
        assert first.stop() == 0
    # once the first has stopped, the file is free again
    third = DevhostProcess(tmp_path / "c.log", backend="sqlite", db_path=db, env=model_env(model)).start()
    assert third.stop() == 0
