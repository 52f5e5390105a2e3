"""Live turn progress over Server-Sent Events: derived from durable state, resumable by id."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.fakes import model_server as steps
from tests.fakes.model_server import FakeModelServer
from tests.integration.harness import Api, wait_until


def read_events(
    api: Api, thread_id: str, last_id: str | None = None, timeout: int = 10
) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    reply = api.request("GET", f"/api/threads/{thread_id}/events?timeout={timeout}", headers=headers)
    assert reply.status == 200 and reply.content_type.startswith("text/event-stream"), reply.body
    events: list[dict[str, Any]] = []
    for block in reply.body.decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            events.append({"id": fields["id"], "event": fields["event"], "data": fields["data"]})
        elif "id" in fields:
            events.append({"id": fields["id"], "event": None, "data": None})
    return events


def test_events_follow_a_turn_and_a_reconnect_gets_only_what_it_missed(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    # the thread's first step (its system entry) lands a moment after it is created
    wait_until(lambda: api.get(f"/api/threads/{thread_id}/messages").json["messages"], what="system entry")
    first = read_events(api, thread_id)
    assert first and first[-1]["event"] == "state"
    last = first[-1]["id"]

    model.enqueue(steps.reply("slow reply", delay=1.0))
    posted = api.post(f"/api/threads/{thread_id}/messages", {"content": "hi there"})
    assert posted.status == 202
    started = time.monotonic()
    taken = [e for e in read_events(api, thread_id, last) if e["event"]]
    assert time.monotonic() - started < 5  # answered on the change, not at the timeout
    kinds = [e["event"] for e in taken]
    assert "message" in kinds or "state" in kinds
    collected = list(taken)
    last = taken[-1]["id"]
    while not any(e["event"] == "entry" and '"slow reply"' in e["data"] for e in collected):
        more = [e for e in read_events(api, thread_id, last) if e["event"]]
        assert more, "the stream ended without the reply"
        collected += more
        last = more[-1]["id"]
    kinds = [e["event"] for e in collected]
    assert kinds.count("message") == 1  # the user message, once
    thinking = [
        json.loads(e["data"]) for e in collected if e["event"] == "state" and '"thinking"' in e["data"]
    ]
    assert thinking and all(t["message_id"] == posted.json["message_id"] for t in thinking)  # what it is on
    # nothing new: a reconnect with the last id waits, then gets no event
    idle = read_events(api, thread_id, last, timeout=1)
    assert [e for e in idle if e["event"] and e["event"] != "state"] == []


def test_an_unknown_thread_has_no_event_stream(api: Api) -> None:
    assert api.get("/api/threads/nope-not-here/events?timeout=0").status == 404
