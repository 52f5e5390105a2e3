"""Live turn progress as Server-Sent Events, derived from durable state only.

A thread's progress is what its durable state says: the orchestration's custom status
(state, the message being answered, running tools, pending approvals) and the stored
history entries. `events_since` compares that state with a cursor (what a client has
already seen) and returns the events it missed plus the new cursor. The cursor is the SSE
event id, so a client reconnecting with `Last-Event-ID` gets only what it missed, in
Azure as locally: nothing depends on the process that served the previous request.

Cursor format: `{last entry seq}.{status version}`, where the status version is a short
digest of the status (any change of it is a new version, even two in the same millisecond).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.thread import ThreadStatus


@dataclass(frozen=True)
class Cursor:
    seq: int = 0
    status: str = ""

    def encode(self) -> str:
        return f"{self.seq}.{self.status}"

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        """A cursor from a Last-Event-ID; anything unreadable starts from the beginning."""
        if not raw:
            return cls()
        seq, _, status = raw.partition(".")
        return cls(int(seq), status) if seq.isdigit() else cls()


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    id: str

    def encode(self) -> str:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {json.dumps(self.data, ensure_ascii=False)}\n\n"


def status_event(status: ThreadStatus) -> dict[str, Any]:
    data: dict[str, Any] = {"state": status.state, "turn": status.turn, "updated_at": status.updated_at}
    if status.answering:
        data["message_id"] = status.answering.get("id")
    if status.tools:
        data["tools"] = list(status.tools)
    approvals = [p for p in status.pending_approvals if "decision" not in p]
    if approvals:
        data["pending_approvals"] = approvals
    return data


def events_since(
    cursor: Cursor, status: ThreadStatus | None, entries: Iterable[Mapping[str, Any]]
) -> tuple[list[Event], Cursor]:
    """The events after `cursor`: a `message` event when a message is taken up, an `entry`
    event per stored entry (seq above the cursor, in order), and a `state` event when the
    status changed. Returns them with the cursor after the last one."""
    events: list[Event] = []
    seq = cursor.seq
    for entry in sorted(entries, key=lambda e: int(e["seq"])):
        if int(entry["seq"]) <= seq:
            continue
        seq = int(entry["seq"])
        kind = "message" if entry.get("role") == "user" else "entry"
        events.append(Event(kind, dict(entry), Cursor(seq, cursor.status).encode()))
    stamp = cursor.status
    if status is not None and status_version(status) != cursor.status:
        stamp = status_version(status)
        events.append(Event("state", status_event(status), Cursor(seq, stamp).encode()))
    return events, Cursor(seq, stamp)


def status_version(status: ThreadStatus) -> str:
    return hashlib.sha256(json.dumps(status.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
