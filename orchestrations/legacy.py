"""Threads written before paged history: finish their old generation, then migrate them.

Such a thread's orchestration input has no `schema`, and its whole history is one legacy
`history` entity. An old generation may have been anywhere when the app was upgraded
(idle, or in the middle of a turn), and a replay must take exactly the actions it took.
So a generation with an old input always runs the old code (`_old_turn`, kept as it was):
it answers its one message against the legacy entity and continues as new, marking the
next input `migrate`. That generation starts by migrating: the old entity's entries are
read in bounded chunks and written to history pages, blobs and the message index, the old
entity is deleted, and the thread goes on the new way. A thread is therefore migrated by
the first message it gets after the upgrade; until then the API reads the legacy entity.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from durabletask import task
from durabletask.entities import EntityInstanceId

from agent.contract import (
    CALL_MODEL_ACTIVITY,
    LEGACY_HISTORY_ENTITY,
    MESSAGE_ENTITY,
    THREAD_ENTITY,
    child_key,
)
from agent.errors import error_for_failure
from agent.model import ChatMessage, ModelReply, ModelRequest
from agent.thread import ThreadConfig, ThreadState, content_digest
from agent.window import ContextWindow

logger = logging.getLogger(__name__)

_OLD_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OLD_RECENT_IDS_KEPT = 32
_OLD_MAX_CONTENT_BYTES = 32 * 1024
EXPORT_CHUNK_BYTES = 96 * 1024
#: added to an old generation's continue-as-new input: the next generation migrates first
MIGRATE = {"migrate": True}


@dataclass(frozen=True)
class OldThreadState:
    """The orchestration input of a pre-paging thread (agent/thread.py at c39cc49)."""

    turn: int = 0
    recent_ids: tuple[str, ...] = ()
    last_message_id: str | None = None
    last_state: str = "idle"
    initialized: bool = False
    created_at: str | None = None
    system_prompt: str = ""
    context_window_bytes: int = 48_000
    metadata: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "turn": self.turn,
            "recent_ids": list(self.recent_ids),
            "last_message_id": self.last_message_id,
            "last_state": self.last_state,
            "initialized": self.initialized,
            "created_at": self.created_at,
            "system_prompt": self.system_prompt,
            "context_window_bytes": self.context_window_bytes,
            "metadata": self.metadata,
            "owner": self.owner,
        }

    @classmethod
    def from_input(cls, data: Any) -> OldThreadState:
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

    def after_turn(self, message_id: str, outcome: str) -> OldThreadState:
        recent = (*self.recent_ids, message_id)[-_OLD_RECENT_IDS_KEPT:]
        return replace(
            self, turn=self.turn + 1, recent_ids=recent, last_message_id=message_id, last_state=outcome
        )


def _now(ctx: task.OrchestrationContext) -> str:
    moment = ctx.current_utc_datetime.replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


def _old_status(state: OldThreadState, current: str, updated_at: str) -> dict[str, Any]:
    return {
        "state": current,
        "turn": state.turn,
        "last_message_id": state.last_message_id,
        "updated_at": updated_at,
    }


def _old_message(data: Any) -> tuple[str, str] | None:
    """(id, content) as the old code accepted them, None for what it skipped."""
    if not isinstance(data, Mapping):
        return None
    message_id, content = data.get("id"), data.get("content")
    if not isinstance(message_id, str) or not _OLD_ID.match(message_id) or not isinstance(content, str):
        return None
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:
        return None
    return (message_id, content) if 0 < size <= _OLD_MAX_CONTENT_BYTES else None


def _old_turn(
    ctx: task.OrchestrationContext, state: OldThreadState, event: Any
) -> Generator[task.Task[Any], Any]:
    """The rest of an old generation after its event, as the old code ran it."""
    old_history = EntityInstanceId(LEGACY_HISTORY_ENTITY, ctx.instance_id)
    parsed = _old_message(event)
    if parsed is None or parsed[0] in state.recent_ids:
        ctx.continue_as_new(state.to_dict() | MIGRATE, save_events=True)
        return
    message_id, content = parsed
    user_entry = {"id": message_id, "role": "user", "content": content, "created_at": _now(ctx)}
    appended = yield ctx.call_entity(old_history, "append", input=user_entry)
    if appended.get("duplicate"):
        ctx.continue_as_new(state.to_dict() | MIGRATE, save_events=True)
        return
    in_progress = replace(state, turn=state.turn + 1, last_message_id=message_id)
    ctx.set_custom_status(_old_status(in_progress, "thinking", _now(ctx)))
    window = yield ctx.call_entity(old_history, "window", input={"budget_bytes": state.context_window_bytes})
    request = ModelRequest(
        thread_id=ctx.instance_id, turn=state.turn + 1, messages=[ChatMessage.from_dict(m) for m in window]
    )
    entry: dict[str, Any] = {"id": f"{message_id}-reply", "reply_to": message_id, "role": "assistant"}
    try:
        result = yield ctx.call_activity(CALL_MODEL_ACTIVITY, input=request.to_dict())
        reply = ModelReply.from_dict(result)
        entry |= {
            "content": reply.content,
            "created_at": _now(ctx),
            "model": reply.model,
            "usage": reply.usage.__dict__,
            "latency_ms": reply.latency_ms,
            "finish_reason": reply.finish_reason,
        }
        outcome = "idle"
    except task.TaskFailedError as failed:
        code, retryable = error_for_failure(failed.details.error_type, failed.details.message)
        entry |= {
            "content": "",
            "created_at": _now(ctx),
            "error": {"code": code, "message": failed.details.message, "retryable": retryable},
        }
        outcome = "error"
    except (KeyError, TypeError, ValueError) as malformed:
        entry |= {
            "content": "",
            "created_at": _now(ctx),
            "error": {
                "code": "model_error",
                "message": f"malformed model reply: {malformed}",
                "retryable": False,
            },
        }
        outcome = "error"
    yield ctx.call_entity(old_history, "append", input=entry)
    next_state = state.after_turn(message_id, outcome)
    ctx.set_custom_status(_old_status(next_state, outcome, _now(ctx)))
    ctx.continue_as_new(next_state.to_dict() | MIGRATE, save_events=True)


def run_legacy_generation(
    ctx: task.OrchestrationContext, raw_input: Any
) -> Generator[task.Task[Any], Any, ThreadState | None]:
    """Run an old generation: answer one message the old way and continue as new (None),
    or, for a generation marked `migrate`, migrate and hand back the new state."""
    state = OldThreadState.from_input(raw_input)
    if isinstance(raw_input, Mapping) and raw_input.get("migrate") is True:
        return (yield from migrate(ctx, state))
    old_history = EntityInstanceId(LEGACY_HISTORY_ENTITY, ctx.instance_id)
    if not state.initialized:
        yield ctx.call_entity(
            old_history,
            "init",
            input={
                "system_prompt": state.system_prompt,
                "metadata": state.metadata,
                "created_at": state.created_at,
            },
        )
        state = replace(state, initialized=True)
    ctx.set_custom_status(_old_status(state, state.last_state, _now(ctx)))
    event = yield ctx.wait_for_external_event("user_message")
    yield from _old_turn(ctx, state, event)
    return None


def migrate(
    ctx: task.OrchestrationContext, old: OldThreadState
) -> Generator[task.Task[Any], Any, ThreadState]:
    """Copy the legacy entity into paged storage and return the thread's new state."""
    from orchestrations.thread import write_entries  # the paged writer; imported late (cycle)

    old_history = EntityInstanceId(LEGACY_HISTORY_ENTITY, ctx.instance_id)
    config = ThreadConfig(
        created_at=old.created_at,
        system_prompt=old.system_prompt,
        context_window_bytes=old.context_window_bytes,
        metadata=old.metadata,
        owner=old.owner,
    )
    state = ThreadState(config=config, initialized=True, turn=old.turn, last_message_id=old.last_message_id)
    ctx.signal_entity(
        EntityInstanceId(THREAD_ENTITY, ctx.instance_id), "init", {"created_at": old.created_at}
    )
    after = 0
    window = ContextWindow()
    recent: list[tuple[str, str, int]] = []
    count = 0
    last_seq = 0
    while True:
        chunk = yield ctx.call_entity(
            old_history, "export", input={"after": after, "max_bytes": EXPORT_CHUNK_BYTES}
        )
        entries = [dict(e) for e in chunk.get("entries") or ()]
        # Acknowledged writes: the old entity goes only once every piece is stored.
        writes = write_entries(ctx, state, entries, acknowledged=True) if entries else []
        for entry in entries:
            last_seq = int(entry["seq"])
            if entry["role"] == "user":
                digest = content_digest(str(entry["content"]))
                record = {"id": entry["id"], "seq": last_seq, "digest": digest, "entry": entry}
                index = EntityInstanceId(MESSAGE_ENTITY, child_key(ctx.instance_id, entry["id"]))
                writes.append(ctx.call_entity(index, "put", input=record))
                recent.append((str(entry["id"]), digest, last_seq))
            if entry["role"] in ("user", "assistant"):
                count += 1
        if writes:
            yield task.when_all(writes)
        window = window.extend(entries, config.context_window_bytes)
        after = chunk.get("next_after")
        if after is None:
            break
    ctx.signal_entity(old_history, "delete")
    last_user = next((r for r in reversed(recent)), None)
    return replace(
        state,
        next_seq=last_seq + 1,
        message_count=count,
        window=window,
        recent=tuple(recent[-64:]),
        last_state="error" if old.last_state == "error" else "idle",
        last_turn={"id": last_user[0], "seq": last_user[2]} if last_user else None,
    )
