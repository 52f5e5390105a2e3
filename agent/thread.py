"""Types and rules of a conversation thread that the orchestration and the HTTP API share.

The thread orchestration carries a `ThreadState` from one generation to the next
(continue-as-new); user turns arrive as `UserMessage` events; the orchestration
publishes a `ThreadStatus` as its custom status. Everything here is pure and JSON-ready.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from agent.errors import InvalidInputError, PayloadTooLargeError

ORCHESTRATION_NAME = "thread"
USER_MESSAGE_EVENT = "user_message"
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_CONTENT_BYTES = 32 * 1024
MAX_METADATA_BYTES = 4 * 1024
RECENT_IDS_KEPT = 32

ThreadStateName = Literal["idle", "thinking", "error"]


def check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise InvalidInputError(f"{what} must match ^[A-Za-z0-9_-]{{1,64}}$ (letters, digits, '_' or '-')")
    return value


def check_content(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInputError("'content' must be a string")
    size = len(value.encode("utf-8"))
    if size == 0:
        raise InvalidInputError("'content' must not be empty")
    if size > MAX_CONTENT_BYTES:
        raise PayloadTooLargeError(
            f"'content' is {size} bytes; the limit is {MAX_CONTENT_BYTES} bytes (32 KiB)"
        )
    return value


@dataclass(frozen=True)
class UserMessage:
    """Payload of the `user_message` external event."""

    id: str
    content: str
    sent_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_event(cls, data: Any) -> UserMessage:
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"user_message event must be an object, got {type(data).__name__}")
        sent_at = data.get("sent_at")
        return cls(
            id=check_id(data.get("id"), "message id"),
            content=check_content(data.get("content")),
            sent_at=sent_at if isinstance(sent_at, str) else None,
        )


@dataclass(frozen=True)
class ThreadState:
    """What one generation of the thread orchestration hands to the next."""

    turn: int = 0
    recent_ids: tuple[str, ...] = ()
    last_message_id: str | None = None
    last_state: ThreadStateName = "idle"
    initialized: bool = False
    created_at: str | None = None
    system_prompt: str = ""
    context_window_bytes: int = 48_000
    metadata: dict[str, Any] = field(default_factory=dict)
    #: the principal that created the thread, when App Service Authentication is trusted
    owner: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["recent_ids"] = list(self.recent_ids)
        return data

    @classmethod
    def from_input(cls, data: Any) -> ThreadState:
        if not isinstance(data, Mapping):
            return cls()
        last_state = data.get("last_state")
        return cls(
            turn=int(data.get("turn") or 0),
            recent_ids=tuple(str(i) for i in data.get("recent_ids") or ()),
            last_message_id=data.get("last_message_id"),
            last_state=last_state if last_state in ("idle", "thinking", "error") else "idle",
            initialized=bool(data.get("initialized")),
            created_at=data.get("created_at"),
            system_prompt=str(data.get("system_prompt") or ""),
            context_window_bytes=int(data.get("context_window_bytes") or 48_000),
            metadata=dict(data.get("metadata") or {}),
            owner=data.get("owner") if isinstance(data.get("owner"), str) else None,
        )

    def after_turn(self, message_id: str, outcome: ThreadStateName) -> ThreadState:
        recent = (*self.recent_ids, message_id)[-RECENT_IDS_KEPT:]
        return replace(
            self, turn=self.turn + 1, recent_ids=recent, last_message_id=message_id, last_state=outcome
        )


def thread_status(state: ThreadState, current: ThreadStateName, updated_at: str) -> dict[str, Any]:
    """The orchestration's custom status."""
    return {
        "state": current,
        "turn": state.turn,
        "last_message_id": state.last_message_id,
        "updated_at": updated_at,
    }
