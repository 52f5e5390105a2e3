"""The exactly-once audit the fault-injection tests end with, and the careful client they use.

`Sender` is a careful client: it resends a POST whose outcome it could not see with the same
`message_id` (the API treats that as idempotent) until it gets a definite answer, and records
every message the API accepted (202, or 200 for a duplicate it had already accepted).

`audit_thread` then checks one thread through the public API: every accepted message has
exactly one user entry and exactly one final reply, the replies follow the messages in the
order the client sent them, nothing else is there, and each reply answers its own message
(`echo: <content>` from the fake model). A failed turn (an error reply) is allowed only
where the caller says so. `integrity_ok` runs `PRAGMA integrity_check` on a SQLite hub file.
"""

from __future__ import annotations

import contextlib
import http.client
import sqlite3
import threading
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.conftest import unique
from tests.integration.harness import Api, wait_until

ACCEPTED = (200, 202)
# the backend is restarting, unreachable or cannot write right now: the outcome is "not accepted"
RETRYABLE = (503,)


@dataclass
class Sender:
    """Posts messages to one thread and keeps the exact tally of what was accepted."""

    api: Api
    thread_id: str
    accepted: list[tuple[str, str]] = field(default_factory=list)
    attempts: int = 0
    refusals: int = 0  # definite "not accepted" answers (503) that were retried

    def send(self, content: str, *, within: float = 90.0) -> str:
        """Posts one message until the API answers 202/200; returns its message id."""
        message_id = unique(f"{self.thread_id}-m")
        deadline = time.monotonic() + within
        pause = threading.Event()  # a resend backoff, never set
        while time.monotonic() < deadline:
            self.attempts += 1
            try:
                reply = self.api.post(
                    f"/api/threads/{self.thread_id}/messages",
                    {"content": content, "message_id": message_id},
                    timeout=10,
                )
            except (OSError, urllib.error.URLError, http.client.HTTPException):
                pause.wait(0.1)  # devhost went away mid-request: the outcome is unknown, resend
                continue
            if reply.status in ACCEPTED:
                self.accepted.append((message_id, content))
                return message_id
            assert reply.status in RETRYABLE, (reply.status, reply.body)
            self.refusals += 1
            pause.wait(0.1)
        raise AssertionError(f"message {message_id} to {self.thread_id} never got a definite answer")


def read_thread(api: Api, thread_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = api.get(f"/api/threads/{thread_id}/messages?after={after}&limit=200").json
        entries += page["messages"]
        after = page["next_after"]
    return entries


def wait_settled(api: Api, thread_id: str, turns: int, timeout: float = 120.0) -> None:
    """Waits until the thread has answered `turns` messages, is idle (or idle after an error),
    and its history holds `turns` replies: history writes are entity signals, applied after
    the orchestration has moved on, so the status can be ahead of the history for a moment."""

    def settled() -> bool:
        try:
            status = api.get(f"/api/threads/{thread_id}").json
            if not (status and status.get("turn") == turns and status.get("state") in ("idle", "error")):
                return False
            replies = [e for e in read_thread(api, thread_id) if e["role"] == "assistant"]
        except (OSError, urllib.error.URLError, http.client.HTTPException):
            return False
        return len(replies) >= turns

    wait_until(settled, timeout=timeout, interval=0.1, what=f"{turns} turns stored on {thread_id}")


def audit_thread(
    api: Api,
    thread_id: str,
    accepted: list[tuple[str, str]],
    *,
    may_fail: Callable[[str, str], bool] | None = None,
) -> list[dict[str, Any]]:
    """Checks the exactly-once guarantees for one thread; returns its non-system entries.

    `may_fail(message_id, content)` says whether an error reply is acceptable for that
    message (by default none is)."""
    entries = read_thread(api, thread_id)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1)), "seq numbers are dense"
    conversation = [e for e in entries if e["role"] != "system"]
    users = [e for e in conversation if e["role"] == "user"]
    replies = [e for e in conversation if e["role"] == "assistant"]
    sent = [m for m, _ in accepted]
    assert len(set(sent)) == len(sent)
    assert len({u["id"] for u in users}) == len(users), "a message stored twice"
    assert sorted(u["id"] for u in users) == sorted(sent), "every accepted message, once, and nothing else"
    assert [u["id"] for u in users] == sent, "messages in the order the client sent them"
    assert len(replies) == len(users), f"{len(users)} messages but {len(replies)} replies"
    assert len({r["reply_to"] for r in replies}) == len(replies), "one reply per message"
    by_id = dict(accepted)
    for user, reply in zip(conversation[0::2], conversation[1::2], strict=True):
        assert user["role"] == "user" and reply["role"] == "assistant", "turns alternate"
        assert reply["reply_to"] == user["id"], "each reply follows its own message"
        assert user["content"] == by_id[user["id"]]
        if reply.get("error"):
            assert may_fail is not None and may_fail(user["id"], user["content"]), (
                f"an error reply where none is allowed: {reply}"
            )
        else:
            assert reply["content"] == f"echo: {user['content']}", reply
    return conversation


def integrity_ok(db: Path) -> bool:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as connection:
        result = connection.execute("PRAGMA integrity_check").fetchone()[0]
    assert result == "ok", result
    return True
