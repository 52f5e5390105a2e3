"""The `thread` orchestration: one eternal instance per conversation (instance id = thread id).

One generation answers many turns. Per plain turn it does five durable things: the step
that takes the `user_message` event (it records the message in the thread's message index
and calls the model), the index write, the `call_model` activity, the step that takes the
reply (it writes the user entry and the reply to their history page and sets the status),
and that page write. The context window lives in the orchestration's own state, so a turn
never reads history back and costs the same at any thread length. A generation continues as
new (`save_events=True`, so queued messages carry over in order) once its history grows
past the payload cap, which keeps every orchestration work item bounded too; the steps of
the last turns therefore stay visible in the current generation.

The orchestration does no I/O and reads no clock or environment: time comes from the
orchestration context, the model is an activity, history writes are entity signals (their
order per entity is kept). A malformed event is logged and skipped; a message id already
answered is skipped (a re-send of a retryable failure is answered again); a model failure
becomes an error entry and the thread keeps answering.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any, Literal, overload

import azure.durable_functions as df
from durabletask import task
from durabletask.entities import EntityInstanceId

from agent import history
from agent.contract import (
    BLOB_ENTITY,
    CALL_MODEL_ACTIVITY,
    CALLER_ENTITY,
    MESSAGE_ENTITY,
    PAGE_ENTITY,
    THREAD_ENTITY,
    THREAD_ORCHESTRATION,
    USER_MESSAGE_EVENT,
    child_key,
)
from agent.errors import error_for_failure, public_message
from agent.model import ModelReply, ModelRequest
from agent.payload import encoded_size
from agent.settings import MAX_SYSTEM_PROMPT_BYTES, REQUEST_OVERHEAD_BYTES
from agent.thread import (
    ThreadState,
    ThreadStateName,
    ThreadStatus,
    UserMessage,
    content_digest,
    utc_text,
)
from orchestrations import legacy
from orchestrations.tool_calls import run_tool_calls

bp = df.Blueprint()
logger = logging.getLogger(__name__)

#: turns one generation answers at most, whatever their size: every step replays its generation,
#: so this bounds a step's work; each generation costs one extra work item (its first step)
MAX_TURNS_PER_GENERATION = 10


def _now(ctx: task.OrchestrationContext) -> str:
    return utc_text(ctx.current_utc_datetime)  # always UTC; some backends send it naive


def max_reply_bytes(payload_cap_bytes: int) -> int:
    """The largest reply entry a thread stores: half of what a model request may carry."""
    return (payload_cap_bytes - REQUEST_OVERHEAD_BYTES - MAX_SYSTEM_PROMPT_BYTES) // 2


@dataclass
class Generation:
    """Bookkeeping of the current generation (rebuilt identically on replay)."""

    bytes: int
    turns: int = 0

    def full(self, payload_cap_bytes: int) -> bool:
        return self.bytes >= payload_cap_bytes or self.turns >= MAX_TURNS_PER_GENERATION


def _status(
    ctx: task.OrchestrationContext,
    state: ThreadState,
    current: ThreadStateName,
    answering: dict[str, Any] | None = None,
    tools: tuple[str, ...] = (),
    approvals: tuple[dict[str, Any], ...] = (),
) -> None:
    status = ThreadStatus(
        state=current,
        turn=state.turn,
        message_count=state.message_count,
        last_seq=state.next_seq - 1,
        updated_at=_now(ctx),
        agent=state.config.agent,
        last_message_id=state.last_message_id,
        answering=answering,
        last_turn=state.last_turn,
        generation=state.generation,
        tools=tools,
        pending_approvals=approvals,
    )
    ctx.set_custom_status(status.to_dict())


@overload
def write_entries(
    ctx: task.OrchestrationContext, state: ThreadState, entries: list[dict[str, Any]]
) -> int: ...


@overload
def write_entries(
    ctx: task.OrchestrationContext,
    state: ThreadState,
    entries: list[dict[str, Any]],
    *,
    acknowledged: Literal[True],
) -> list[task.Task[Any]]: ...


def write_entries(
    ctx: task.OrchestrationContext,
    state: ThreadState,
    entries: list[dict[str, Any]],
    *,
    acknowledged: bool = False,
) -> int | list[task.Task[Any]]:
    """Write entries to their history pages (and blobs for large ones): one-way signals,
    returning the bytes sent; or, `acknowledged`, entity calls to wait for."""
    items, blobs = history.split_for_storage(entries, state.config.payload_cap_bytes)
    writes: list[tuple[EntityInstanceId, str, dict[str, Any]]] = [
        (EntityInstanceId(BLOB_ENTITY, child_key(ctx.instance_id, blob["seq"])), "put", blob)
        for blob in blobs
    ]
    by_page: dict[int, list[dict[str, Any]]] = {}
    for item in items:
        by_page.setdefault(history.page_of(int(item["seq"])), []).append(item)
    writes += [
        (EntityInstanceId(PAGE_ENTITY, child_key(ctx.instance_id, page)), "append", {"entries": page_entries})
        for page, page_entries in sorted(by_page.items())
    ]
    if acknowledged:
        return [ctx.call_entity(entity, operation, input=payload) for entity, operation, payload in writes]
    for entity, operation, payload in writes:
        ctx.signal_entity(entity, operation, payload)
    return sum(encoded_size(payload) for _, _, payload in writes)


def start_thread(ctx: task.OrchestrationContext, state: ThreadState) -> tuple[ThreadState, int]:
    """First step of a new thread: its root record and the system entry."""
    config = state.config
    root = EntityInstanceId(THREAD_ENTITY, ctx.instance_id)
    ctx.signal_entity(root, "init", {"created_at": config.created_at, "agent": config.agent})
    sent = 0
    next_seq = 1
    if config.system_prompt:
        system = {
            "seq": 1,
            "id": "system",
            "role": "system",
            "content": config.system_prompt,
            "created_at": config.created_at or _now(ctx),
        }
        sent = write_entries(ctx, state, [system])
        next_seq = 2
    return replace(state, initialized=True, next_seq=next_seq), sent


def _reply_entry(
    ctx: task.OrchestrationContext, seq: int, message: UserMessage, reply: ModelReply
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "seq": seq,
        "id": f"{message.id}-reply" if not message.retry else f"{message.id}-reply-{seq}",
        "reply_to": message.id,
        "role": "assistant",
        "content": reply.content,
        "created_at": _now(ctx),
        "model": reply.model,
        "usage": reply.usage.__dict__,
        "latency_ms": reply.latency_ms,
        "finish_reason": reply.finish_reason,
    }
    if reply.truncated:
        entry["truncated"] = True
    return entry


def _error_entry(
    ctx: task.OrchestrationContext, seq: int, message: UserMessage, failure: task.FailureDetails
) -> dict[str, Any]:
    code, retryable = error_for_failure(failure.error_type, failure.message)
    return {
        "seq": seq,
        "id": f"{message.id}-reply" if not message.retry else f"{message.id}-reply-{seq}",
        "reply_to": message.id,
        "role": "assistant",
        "content": "",
        "created_at": _now(ctx),
        "error": {"code": code, "message": public_message(failure.message), "retryable": retryable},
    }


def _entry_base(
    ctx: task.OrchestrationContext, seq: int, entry_id: str, message: UserMessage
) -> dict[str, Any]:
    return {"seq": seq, "id": entry_id, "reply_to": message.id, "created_at": _now(ctx)}


def answer(
    ctx: task.OrchestrationContext, state: ThreadState, message: UserMessage, user_seq: int | None
) -> Generator[task.Task[Any], Any, tuple[ThreadState, int]]:
    """One turn: the model's reply (or an error entry) to `message`, with as many rounds of
    tool calls in between as the model asks for, up to the thread's limit.

    `user_seq` is set when re-answering a stored message (a retry); otherwise the message
    gets the next seq. Entries are written when a round ends (the user entry with the first),
    so a turn waiting for an approval already shows what it asked for."""
    log = ctx.create_replay_safe_logger(logger)
    config = state.config
    retry = user_seq is not None
    seq = user_seq if user_seq is not None else state.next_seq
    user_entry = {
        "seq": seq,
        "id": message.id,
        "role": "user",
        "content": message.content,
        "created_at": _now(ctx),
    }
    digest = content_digest(message.content)
    sent = 0
    if not retry:
        record = {"id": message.id, "seq": seq, "digest": digest, "entry": user_entry}
        ctx.signal_entity(
            EntityInstanceId(MESSAGE_ENTITY, child_key(ctx.instance_id, message.id)), "put", record
        )
        sent += encoded_size(record)
    turn = state.turn + 1
    asking = replace(
        state, turn=turn, last_message_id=message.id, next_seq=state.next_seq + (0 if retry else 1)
    )
    answering = {"id": message.id, "seq": seq}
    _status(ctx, asking, "thinking", answering=answering)

    # A retried message whose failed turn left it last in the window is not sent twice.
    already_last = retry and state.window.entries and state.window.entries[-1].get("id") == message.id
    window = state.window.extend([] if already_last else [user_entry], config.context_window_bytes)
    unwritten: list[dict[str, Any]] = [] if retry else [user_entry]
    next_seq = asking.next_seq
    outcome: ThreadStateName = "idle"
    rounds = 0
    tokens_used = 0

    def publish(
        current: ThreadStateName, tools: tuple[str, ...], approvals: tuple[dict[str, Any], ...]
    ) -> None:
        progress = replace(asking, next_seq=next_seq)
        _status(ctx, progress, current, answering=answering, tools=tools, approvals=approvals)

    while True:
        request = ModelRequest(
            thread_id=ctx.instance_id,
            turn=turn,
            messages=window.model_messages(config.system_prompt),
            max_reply_bytes=max_reply_bytes(config.payload_cap_bytes),
        ).to_dict() | {"agent": config.agent}
        try:
            result = yield ctx.call_activity(CALL_MODEL_ACTIVITY, input=request)
            sent += encoded_size(request) + encoded_size(result)
            reply = ModelReply.from_dict(result)
            calls = [dict(c) for c in result.get("tool_calls") or () if isinstance(c, dict)]
            tokens_used += reply.usage.total_tokens
        except task.TaskFailedError as failed:
            log.warning("thread %s: turn %d failed: %s", ctx.instance_id, turn, failed.details.error_type)
            entry = _error_entry(ctx, next_seq, message, failed.details)
            outcome = "error"
            break
        except (KeyError, TypeError, ValueError, AttributeError) as malformed:
            # A reply the activity should never produce; the thread must outlive it all the same.
            details = task.FailureDetails(f"malformed model reply: {malformed}", "ModelCallError", None)
            entry = _error_entry(ctx, next_seq, message, details)
            outcome = "error"
            break
        if not calls:
            entry = _reply_entry(ctx, next_seq, message, reply)
            break
        if rounds >= config.max_tool_rounds:
            entry = _entry_base(ctx, next_seq, f"{message.id}-reply", message) | {
                "role": "assistant",
                "content": (
                    f"I stopped after {rounds} rounds of tool calls without reaching an answer "
                    f"(the limit is {config.max_tool_rounds} rounds per turn)."
                ),
                "finish_reason": "tool_rounds_exhausted",
                "model": reply.model,
            }
            break
        rounds += 1
        calls_entry = _entry_base(ctx, next_seq, f"{message.id}-calls-{rounds}", message) | {
            "role": "assistant",
            "content": reply.content,
            "tool_calls": [
                {"id": c["id"], "name": c["name"], "arguments": c.get("arguments") or "{}"} for c in calls
            ],
            "model": reply.model,
            "usage": reply.usage.__dict__,
            "finish_reason": reply.finish_reason,
        }
        next_seq += 1
        publish("thinking", (), ())  # the call entry has its seq; status counts it
        outcomes = yield from run_tool_calls(
            ctx,
            agent=config.agent,
            calls=calls,
            approval_timeout_seconds=config.approval_timeout_seconds,
            publish=publish,
        )
        tool_entries = []
        for tool in outcomes:
            tool_entry = _entry_base(ctx, next_seq, f"{message.id}-tool-{tool.call_id}", message) | {
                "role": "tool",
                "content": tool.content,
                "tool_call_id": tool.call_id,
                "name": tool.name,
            }
            if tool.is_error:
                tool_entry["is_error"] = True
            if tool.approval:
                tool_entry["approval"] = tool.approval
            tool_entries.append(tool_entry)
            next_seq += 1
        sent += write_entries(ctx, state, [*unwritten, calls_entry, *tool_entries])
        unwritten = []
        window = window.extend([calls_entry, *tool_entries], config.context_window_bytes)
        publish("thinking", (), ())

    reply_seq = next_seq
    if retry:
        entry["attempt"] = message.attempt
        record = {
            "id": message.id,
            "seq": seq,
            "digest": digest,
            "attempt": message.attempt,
            "reply_seq": reply_seq,
        }
        ctx.signal_entity(
            EntityInstanceId(MESSAGE_ENTITY, child_key(ctx.instance_id, message.id)), "put", record
        )
    sent += write_entries(ctx, state, [*unwritten, entry])
    if config.count_tokens and config.caller and tokens_used:
        usage = {"day": ctx.current_utc_datetime.strftime("%Y-%m-%d"), "tokens": tokens_used}
        ctx.signal_entity(EntityInstanceId(CALLER_ENTITY, config.caller), "tokens", usage)
    done = replace(
        asking,
        next_seq=reply_seq + 1,
        message_count=state.message_count + (1 if retry else 2),
        window=window.extend([entry] if outcome == "idle" else [], config.context_window_bytes),
        last_state=outcome,
        last_turn={"id": message.id, "seq": seq},
    ).remember(message.id, digest, seq)
    _status(ctx, done, outcome)
    return done, sent


def run_thread(ctx: task.OrchestrationContext, raw_input: Any) -> Generator[task.Task[Any], Any]:
    """Generations of a thread: answer messages in arrival order, continue as new when full."""
    log = ctx.create_replay_safe_logger(logger)
    if ThreadState.is_current(raw_input):
        state = ThreadState.from_input(raw_input)
    else:
        migrated = yield from legacy.run_legacy_generation(ctx, raw_input)
        if migrated is None:
            return  # an old generation answered its message the old way and continued as new
        state = migrated
    generation = Generation(bytes=encoded_size(raw_input))
    if not state.initialized:
        state, sent = start_thread(ctx, state)
        generation.bytes += sent

    while True:
        _status(ctx, state, "error" if state.last_state == "error" else "idle")
        event = yield ctx.wait_for_external_event(USER_MESSAGE_EVENT)
        generation.bytes += encoded_size(event) if _encodable(event) else 0
        try:
            message = UserMessage.from_event(event)
        except Exception as bad:  # noqa: BLE001 - every shape of bad payload is skipped, never fatal
            log.warning(
                "thread %s: skipped a malformed %s event: %s", ctx.instance_id, USER_MESSAGE_EVENT, bad
            )
            continue
        known = state.find_recent(message.id)
        user_seq: int | None = None
        if message.retry and message.retry_seq is not None and message.retry_seq < state.next_seq:
            user_seq = message.retry_seq
        elif known is not None:
            digest, _ = known
            if digest != content_digest(message.content):
                log.warning(
                    "thread %s: message id %s was reused for other content; skipped",
                    ctx.instance_id,
                    message.id,
                )
            elif not message.retry:
                log.info("thread %s: message %s was already answered; skipped", ctx.instance_id, message.id)
            else:
                user_seq = known[1]
            if user_seq is None:
                continue
        state, sent = yield from answer(ctx, state, message, user_seq)
        generation.bytes += sent
        generation.turns += 1
        if generation.full(state.config.payload_cap_bytes):
            ctx.continue_as_new(replace(state, generation=state.generation + 1).to_dict(), save_events=True)
            return


def _encodable(value: Any) -> bool:
    try:
        encoded_size(value)
    except (TypeError, ValueError):
        return False
    return True


@bp.orchestration_trigger(context_name="context", orchestration=THREAD_ORCHESTRATION)
def thread(context: task.OrchestrationContext, raw_state: Any) -> Generator[task.Task[Any], Any]:
    yield from run_thread(context, raw_state)
