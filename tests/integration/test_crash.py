"""devhost on the SQLite task hub survives SIGKILL at random moments with no message lost or doubled.

Several threads receive many messages over HTTP while devhost is killed with SIGKILL and
restarted, again and again. The client behaves as a careful client does: a POST whose
outcome it could not see is sent again with the same message_id (which the API treats as
idempotent). At the end every accepted message has exactly one user entry and exactly one
reply in its thread, turns are in order, and the database passes `PRAGMA integrity_check`.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import sqlite3
import threading
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import model_server as steps
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.harness import DevhostProcess, free_port, wait_until

KILLS = 20
THREADS = 3


class Client(threading.Thread):
    """Posts messages to one thread until told to stop; records what was accepted."""

    def __init__(self, host: DevhostProcess, thread_id: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.host, self.thread_id, self.stop = host, thread_id, stop
        self.accepted: list[tuple[str, str]] = []
        self.attempts = 0

    def run(self) -> None:
        counter = 0
        while not self.stop.is_set():
            counter += 1
            message_id, content = unique(f"{self.thread_id}-{counter}"), f"{self.thread_id} says {counter}"
            # Resend with the same id until the outcome is known, even after `stop`: a POST
            # cut off by a kill may have been accepted, and the tally must be exact.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                self.attempts += 1
                try:
                    reply = self.host.api.post(
                        f"/api/threads/{self.thread_id}/messages",
                        {"content": content, "message_id": message_id},
                        timeout=5,
                    )
                except (OSError, urllib.error.URLError, http.client.HTTPException):
                    time.sleep(0.1)  # killed mid-request: the outcome is unknown
                    continue
                if reply.status == 202:
                    self.accepted.append((message_id, content))
                    break
                assert reply.status == 503, reply.body  # the backend is restarting: try again
                time.sleep(0.1)
            else:
                raise AssertionError(f"message {message_id} never got a definite answer")
            time.sleep(random.uniform(0.02, 0.15))


def check_thread(host: DevhostProcess, thread_id: str, accepted: list[tuple[str, str]]) -> None:
    entries: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = host.api.get(f"/api/threads/{thread_id}/messages?after={after}&limit=200").json
        entries += page["messages"]
        after = page["next_after"]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    conversation = [e for e in entries if e["role"] != "system"]
    users = [e for e in conversation if e["role"] == "user"]
    replies = [e for e in conversation if e["role"] == "assistant"]
    assert sorted(u["id"] for u in users) == sorted(m for m, _ in accepted), "every accepted message, once"
    assert len({u["id"] for u in users}) == len(users)
    assert len(replies) == len(users)
    assert len({r["reply_to"] for r in replies}) == len(replies), "one reply per message"
    for user, reply in zip(conversation[0::2], conversation[1::2], strict=True):
        assert user["role"] == "user" and reply["reply_to"] == user["id"], "turns in order"
        assert reply["content"] == f"echo: {user['content']}", reply
    by_id = dict(accepted)
    assert all(u["content"] == by_id[u["id"]] for u in users)
    # messages sent in order by one client are answered in that order
    sent_order = [m for m, _ in accepted]
    assert [u["id"] for u in users] == sent_order


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.reset()
    fake_model.set_default(steps.echo(delay=0.05))
    db = tmp_path / "taskhub.db"
    port = free_port()

    def start() -> DevhostProcess:
        host = DevhostProcess(
            tmp_path / "devhost.log", backend="sqlite", db_path=db, env=model_env(fake_model), port=port
        )
        return host.start(timeout=60)

    host = start()
    thread_ids = [unique("crash") for _ in range(THREADS)]
    for thread_id in thread_ids:
        assert host.api.post("/api/threads", {"thread_id": thread_id}).status == 201
    stop = threading.Event()
    clients = [Client(host, t, stop) for t in thread_ids]
    for client in clients:
        client.start()
    rng = random.Random(20261124)
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.2))
            host.kill()
            fresh = start()
            for client in clients:
                client.host = fresh
            host = fresh
    finally:
        stop.set()
        for client in clients:
            client.join(30)
    try:
        for client in clients:
            assert client.accepted, "the client got nothing through"
            wanted = len(client.accepted)

            def settled(thread_id: str = client.thread_id, wanted: int = wanted) -> bool:
                # The status turns idle in the step that stores the reply; the history page is
                # written right after it, so wait for both.
                status = host.api.get(f"/api/threads/{thread_id}").json
                if not (status["turn"] == wanted and status["state"] == "idle"):
                    return False
                replies = 0
                after: int | None = 0
                while after is not None:
                    page = host.api.get(f"/api/threads/{thread_id}/messages?after={after}&limit=200").json
                    replies += sum(1 for e in page["messages"] if e["role"] == "assistant")
                    after = page["next_after"]
                return replies >= wanted

            wait_until(settled, timeout=120, what=f"{wanted} turns on {client.thread_id}")
            check_thread(host, client.thread_id, client.accepted)
    finally:
        assert host.stop() == 0, host.log()
    with contextlib.closing(sqlite3.connect(db)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    total = sum(len(c.accepted) for c in clients)
    print(f"\n{KILLS} kills, {total} messages accepted, {sum(c.attempts for c in clients)} POST attempts")
