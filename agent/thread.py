"""Types and rules of a conversation thread shared by the orchestration and the HTTP API.

The `thread` orchestration carries a `ThreadState` from one generation to the next
(continue-as-new): the thread's configuration, its counters, the context window the model
sees next, and the recent message ids it has answered. User turns arrive as `UserMessage`
events; the orchestration publishes a `ThreadStatus` as its custom status, which the API
reads for a thread's summary. Everything here is pure and JSON-ready.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from agent.errors import InvalidInputError, PayloadTooLargeError
from agent.window import ContextWindow

SCHEMA_VERSION = 2
# fullmatch: `$` would also match before a trailing newline.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_CONTENT_BYTES = 32 * 1024
MAX_METADATA_BYTES = 4 * 1024
RECENT_IDS_KEPT = 64

ThreadStateName = Literal["idle", "thinking", "running_tools", "awaiting_approval", "error"]
THREAD_STATES: tuple[ThreadStateName, ...] = (
    "idle",
    "thinking",
    "running_tools",
    "awaiting_approval",
    "error",
)


def is_utf8_text(value: str) -> bool:
    """False for strings that cannot be encoded as UTF-8 (lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidInputError(f"{what} must match ^[A-Za-z0-9_-]{{1,64}}$ (letters, digits, '_' or '-')")
    return value


def check_content(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInputError("'content' must be a string")
    if not is_utf8_text(value):
        raise InvalidInputError("'content' is not valid Unicode text (it holds a lone surrogate)")
    size = len(value.encode("utf-8"))
    if size == 0:
        raise InvalidInputError("'content' must not be empty")
    if size > MAX_CONTENT_BYTES:
        raise PayloadTooLargeError(
            f"'content' is {size} bytes; the limit is {MAX_CONTENT_BYTES} bytes (32 KiB)"
        )
    return value


def utc_text(moment: datetime) -> str:
    """A time as threads and the API write it: ISO 8601 UTC, milliseconds, a Z. A naive
    datetime is read as UTC (durable contexts and clients hand those over)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def content_digest(content: str) -> str:
    """A short fingerprint of a message's text, to tell a re-send from a reused id."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class UserMessage:
    """Payload of the `user_message` external event.

    `retry` asks the thread to answer an already-stored message again (its last turn
    failed with a retryable error); `retry_seq` is that message's user entry."""

    id: str
    content: str
    sent_at: str | None = None
    retry: bool = False
    retry_seq: int | None = None
    #: which attempt at answering this is (2 for the first retry)
    attempt: int = 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.retry:
            del data["retry"], data["retry_seq"], data["attempt"]
        return data

    @classmethod
    def from_event(cls, data: Any) -> UserMessage:
        """Parse an event payload; any malformed shape raises InvalidInputError."""
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"user_message event must be an object, got {type(data).__name__}")
        sent_at = data.get("sent_at")
        retry_seq = data.get("retry_seq")
        attempt = data.get("attempt")
        return cls(
            id=check_id(data.get("id"), "message id"),
            content=check_content(data.get("content")),
            sent_at=sent_at if isinstance(sent_at, str) and is_utf8_text(sent_at) else None,
            retry=data.get("retry") is True,
            retry_seq=retry_seq if isinstance(retry_seq, int) and not isinstance(retry_seq, bool) else None,
            attempt=attempt
            if isinstance(attempt, int) and not isinstance(attempt, bool) and attempt > 1
            else 1,
        )


@dataclass(frozen=True)
class ThreadConfig:
    """What a thread is, fixed when it is created (settings are read by the API, never by
    the orchestration, so they travel in here)."""

    created_at: str | None = None
    system_prompt: str = ""
    agent: str = "assistant"
    context_window_bytes: int = 48_000
    payload_cap_bytes: int = 256 * 1024
    metadata: dict[str, Any] = field(default_factory=dict)
    #: the principal that created the thread, when callers are authenticated
    owner: str | None = None
    max_tool_rounds: int = 8
    approval_timeout_seconds: float = 86_400.0
    #: the caller entity's key (a digest) that this thread's usage counts against
    caller: str | None = None
    #: add each turn's tokens to the caller's daily count (RATE_LIMIT_TOKENS_PER_DAY is on)
    count_tokens: bool = False

    @classmethod
    def from_dict(cls, data: Any) -> ThreadConfig:
        data = data if isinstance(data, Mapping) else {}
        owner = data.get("owner")
        return cls(
            created_at=data.get("created_at") if isinstance(data.get("created_at"), str) else None,
            system_prompt=str(data.get("system_prompt") or ""),
            agent=str(data.get("agent") or "assistant"),
            context_window_bytes=int(data.get("context_window_bytes") or 48_000),
            payload_cap_bytes=int(data.get("payload_cap_bytes") or 256 * 1024),
            metadata=dict(data.get("metadata") or {}),
            owner=owner if isinstance(owner, str) else None,
            max_tool_rounds=int(data.get("max_tool_rounds") or 8),
            approval_timeout_seconds=float(data.get("approval_timeout_seconds") or 86_400.0),
            caller=data.get("caller") if isinstance(data.get("caller"), str) else None,
            count_tokens=data.get("count_tokens") is True,
        )


@dataclass(frozen=True)
class ThreadState:
    """What one generation of the thread orchestration hands to the next."""

    config: ThreadConfig = field(default_factory=ThreadConfig)
    initialized: bool = False
    turn: int = 0
    #: the sequence number the next history entry gets (the system entry is 1)
    next_seq: int = 1
    #: user messages and final replies stored (no system or tool entries)
    message_count: int = 0
    #: the conversation entries the model sees next (the context window), oldest first
    window: ContextWindow = field(default_factory=ContextWindow)
    #: [message id, content digest, seq of its user entry] of recent messages, oldest first
    recent: tuple[tuple[str, str, int], ...] = ()
    last_state: ThreadStateName = "idle"
    last_message_id: str | None = None
    #: the user entry of the last answered turn: {"id", "seq"}
    last_turn: dict[str, Any] | None = None
    #: how many times the orchestration continued as new
    generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "config": asdict(self.config),
            "initialized": self.initialized,
            "turn": self.turn,
            "next_seq": self.next_seq,
            "message_count": self.message_count,
            "window": list(self.window.entries),
            "recent": [list(r) for r in self.recent],
            "last_state": self.last_state,
            "last_message_id": self.last_message_id,
            "last_turn": self.last_turn,
            "generation": self.generation,
        }

    @staticmethod
    def is_current(data: Any) -> bool:
        """True for a state of this schema; False for a thread written before paging."""
        return isinstance(data, Mapping) and data.get("schema") == SCHEMA_VERSION

    @classmethod
    def from_input(cls, data: Any) -> ThreadState:
        if not cls.is_current(data):
            return cls()
        last_state = data.get("last_state")
        recent: list[tuple[str, str, int]] = []
        for item in data.get("recent") or ():
            if isinstance(item, list | tuple) and len(item) == 3:
                recent.append((str(item[0]), str(item[1]), int(item[2])))
        last_turn = data.get("last_turn")
        config = ThreadConfig.from_dict(data.get("config"))
        window = [e for e in data.get("window") or () if isinstance(e, Mapping)]
        return cls(
            config=config,
            initialized=bool(data.get("initialized")),
            turn=int(data.get("turn") or 0),
            next_seq=int(data.get("next_seq") or 1),
            message_count=int(data.get("message_count") or 0),
            window=ContextWindow.of(window, config.context_window_bytes),
            recent=tuple(recent),
            last_state=last_state if last_state in THREAD_STATES else "idle",
            last_message_id=data.get("last_message_id"),
            last_turn=dict(last_turn) if isinstance(last_turn, Mapping) else None,
            generation=int(data.get("generation") or 0),
        )

    def find_recent(self, message_id: str) -> tuple[str, int] | None:
        """(content digest, user entry seq) of a recently answered message."""
        for known_id, digest, seq in reversed(self.recent):
            if known_id == message_id:
                return digest, seq
        return None

    def remember(self, message_id: str, digest: str, seq: int) -> ThreadState:
        recent = tuple(r for r in self.recent if r[0] != message_id)
        return replace(self, recent=(*recent, (message_id, digest, seq))[-RECENT_IDS_KEPT:])


@dataclass(frozen=True)
class ThreadStatus:
    """The orchestration's custom status: what the API reports without reading history."""

    state: ThreadStateName
    turn: int
    message_count: int
    #: the highest sequence number assigned; entries up to it are stored or being stored
    last_seq: int
    updated_at: str
    agent: str
    last_message_id: str | None = None
    #: the message being answered: {"id", "seq"}; its user entry is in the message index
    answering: dict[str, Any] | None = None
    #: the last answered message's user entry: {"id", "seq"}
    last_turn: dict[str, Any] | None = None
    tools: tuple[str, ...] = ()
    pending_approvals: tuple[dict[str, Any], ...] = ()
    #: the orchestration's generation (continue-as-new count)
    generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        # Spelled out rather than dataclasses.asdict: this runs several times per replayed turn.
        return {
            "state": self.state,
            "turn": self.turn,
            "message_count": self.message_count,
            "last_seq": self.last_seq,
            "updated_at": self.updated_at,
            "agent": self.agent,
            "last_message_id": self.last_message_id,
            "answering": dict(self.answering) if self.answering is not None else None,
            "last_turn": dict(self.last_turn) if self.last_turn is not None else None,
            "tools": list(self.tools),
            "pending_approvals": [dict(p) for p in self.pending_approvals],
            "generation": self.generation,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ThreadStatus | None:
        if not isinstance(data, Mapping) or "last_seq" not in data:
            return None
        state = data.get("state")
        return cls(
            state=state if state in THREAD_STATES else "idle",
            turn=int(data.get("turn") or 0),
            message_count=int(data.get("message_count") or 0),
            last_seq=int(data.get("last_seq") or 0),
            updated_at=str(data.get("updated_at") or ""),
            agent=str(data.get("agent") or "assistant"),
            last_message_id=data.get("last_message_id"),
            answering=data.get("answering") if isinstance(data.get("answering"), Mapping) else None,
            last_turn=data.get("last_turn") if isinstance(data.get("last_turn"), Mapping) else None,
            tools=tuple(str(t) for t in data.get("tools") or ()),
            pending_approvals=tuple(
                dict(p) for p in data.get("pending_approvals") or () if isinstance(p, Mapping)
            ),
            generation=int(data.get("generation") or 0),
        )
