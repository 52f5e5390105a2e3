"""Pure rules of the legacy single-blob history (threads written before paged storage).

The legacy `history` entity (entities/legacy_history.py) adapts these to Durable Entities;
the HTTP API reads a not-yet-migrated thread with them, and `export` hands its entries out
in bounded chunks when the thread migrates to paged storage. The rules:

- entries get consecutive `seq` numbers starting at 1; an entry whose `id` is already
  present is not appended again (idempotent appends make redelivered events harmless);
- `page` reads entries after a sequence number;
- `window` picks what the model sees: every system entry, then the newest conversation
  entries that fit a byte budget (oldest dropped first); failed turns are never sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import InvalidInputError
from agent.model import ChatMessage

ROLES = ("system", "user", "assistant")

MAX_PAGE_SIZE = 200
OPTIONAL_FIELDS = ("reply_to", "model", "usage", "latency_ms", "finish_reason", "error")


@dataclass(frozen=True)
class HistoryState:
    entries: tuple[dict[str, Any], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None

    @property
    def last_seq(self) -> int:
        return int(self.entries[-1]["seq"]) if self.entries else 0

    def to_dict(self) -> dict[str, Any]:
        return {"entries": list(self.entries), "metadata": self.metadata, "created_at": self.created_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> HistoryState:
        if not data:
            return cls()
        return cls(
            entries=tuple(data.get("entries") or ()),
            metadata=dict(data.get("metadata") or {}),
            created_at=data.get("created_at"),
        )


@dataclass(frozen=True)
class AppendResult:
    seq: int
    duplicate: bool

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "duplicate": self.duplicate}


def init(
    state: HistoryState, *, system_prompt: str, metadata: Mapping[str, Any], created_at: str
) -> HistoryState:
    """Set a new thread's metadata and system prompt; a no-op once the thread has entries."""
    if state.entries or state.created_at is not None:
        return state
    started = HistoryState(metadata=dict(metadata), created_at=created_at)
    if not system_prompt:
        return started
    entry = {"id": "system", "role": "system", "content": system_prompt, "created_at": created_at}
    return append(started, entry)[0]


def validate_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Check an entry to append and return a clean copy (no `seq`; that is assigned)."""
    entry_id, role, content = entry.get("id"), entry.get("role"), entry.get("content")
    if not isinstance(entry_id, str) or not entry_id:
        raise InvalidInputError("history entry needs a non-empty string 'id'")
    if role not in ROLES:
        raise InvalidInputError(f"history entry role must be one of {ROLES}, got {role!r}")
    if not isinstance(content, str):
        raise InvalidInputError("history entry 'content' must be a string")
    created_at = entry.get("created_at")
    if not isinstance(created_at, str):
        raise InvalidInputError("history entry needs 'created_at' as an ISO 8601 string")
    clean: dict[str, Any] = {"id": entry_id, "role": role, "content": content, "created_at": created_at}
    for name in OPTIONAL_FIELDS:
        if entry.get(name) is not None:
            clean[name] = entry[name]
    return clean


def append(state: HistoryState, entry: Mapping[str, Any]) -> tuple[HistoryState, AppendResult]:
    clean = validate_entry(entry)
    for existing in state.entries:
        if existing["id"] == clean["id"]:
            return state, AppendResult(seq=int(existing["seq"]), duplicate=True)
    seq = state.last_seq + 1
    stored = {"seq": seq, **clean}
    return (
        HistoryState(entries=(*state.entries, stored), metadata=state.metadata, created_at=state.created_at),
        AppendResult(seq=seq, duplicate=False),
    )


def page(state: HistoryState, *, after: int = 0, limit: int = 50) -> dict[str, Any]:
    """Entries with seq > after, at most `limit`; `next_after` is set when more follow."""
    if after < 0:
        raise InvalidInputError("'after' must be 0 or a positive sequence number")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"'limit' must be between 1 and {MAX_PAGE_SIZE}")
    # seq is dense from 1, so entry seq N sits at index N-1.
    selected = list(state.entries[after : after + limit])
    more = after + limit < len(state.entries)
    return {"entries": selected, "next_after": selected[-1]["seq"] if more and selected else None}


def find_reply(state: HistoryState, message_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The user entry with this id and the entry that answered it (reply or error), if any."""
    message = next((e for e in state.entries if e["id"] == message_id and e["role"] == "user"), None)
    if message is None:
        return None, None
    reply = next((e for e in state.entries if e.get("reply_to") == message_id), None)
    return message, reply


def export(state: HistoryState, *, after: int, max_bytes: int) -> dict[str, Any]:
    """Entries after `after` whose encoded size adds up to at most `max_bytes` (at least one)."""
    chosen: list[dict[str, Any]] = []
    used = 0
    for entry in state.entries[after:]:
        size = len(json.dumps(entry))
        if chosen and used + size > max_bytes:
            break
        chosen.append(entry)
        used += size
    more = after + len(chosen) < len(state.entries)
    return {"entries": chosen, "next_after": chosen[-1]["seq"] if more and chosen else None}


def entry_size(entry: Mapping[str, Any]) -> int:
    return len(str(entry["content"]).encode("utf-8")) + len(str(entry["role"]))


def window(state: HistoryState, *, budget_bytes: int) -> list[ChatMessage]:
    """System entries, then the newest conversation entries within `budget_bytes`.

    The newest entry is always included, even when it alone exceeds the budget: the
    model must see the message it is answering.
    """
    if budget_bytes < 1:
        raise InvalidInputError("'budget_bytes' must be positive")
    system = [e for e in state.entries if e["role"] == "system"]
    conversation = [e for e in state.entries if e["role"] != "system" and "error" not in e]
    remaining = budget_bytes - sum(entry_size(e) for e in system)
    chosen: list[Mapping[str, Any]] = []
    for entry in reversed(conversation):
        size = entry_size(entry)
        if chosen and size > remaining:
            break
        chosen.append(entry)
        remaining -= size
    chosen.reverse()
    return [ChatMessage(role=str(e["role"]), content=str(e["content"])) for e in (*system, *chosen)]
