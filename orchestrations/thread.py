"""The `thread` orchestration: one eternal instance per conversation (instance id = thread id).

Each generation answers one user message and then continues as new with
`save_events=True`, so messages that arrived meanwhile are carried into the next
generation in arrival order and none is lost. The orchestration does no I/O and reads no
clock or environment: time comes from the orchestration context, every model call is the
`call_model` activity and every history change is an acknowledged call to the thread's
`history` entity.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import replace
from typing import Any

import azure.durable_functions as df
from durabletask import task
from durabletask.entities import EntityInstanceId

from agent.errors import DurableAgentError, error_for_failure
from agent.model import ChatMessage, ModelReply, ModelRequest
from agent.thread import (
    ORCHESTRATION_NAME,
    USER_MESSAGE_EVENT,
    ThreadState,
    ThreadStateName,
    UserMessage,
    thread_status,
)
from entities.history import ENTITY_NAME

MODEL_ACTIVITY = "call_model"

bp = df.Blueprint()
logger = logging.getLogger(__name__)


def _now(ctx: task.OrchestrationContext) -> str:
    moment = ctx.current_utc_datetime.replace(tzinfo=None)  # always UTC; some backends send it naive
    return moment.isoformat(timespec="milliseconds") + "Z"


def _assistant_entry(
    ctx: task.OrchestrationContext, message: UserMessage, reply: ModelReply
) -> dict[str, Any]:
    return {
        "id": f"{message.id}-reply",
        "reply_to": message.id,
        "role": "assistant",
        "content": reply.content,
        "created_at": _now(ctx),
        "model": reply.model,
        "usage": reply.usage.__dict__,
        "latency_ms": reply.latency_ms,
        "finish_reason": reply.finish_reason,
    }


def _error_entry(
    ctx: task.OrchestrationContext, message: UserMessage, failure: task.FailureDetails
) -> dict[str, Any]:
    code, retryable = error_for_failure(failure.error_type, failure.message)
    return {
        "id": f"{message.id}-reply",
        "reply_to": message.id,
        "role": "assistant",
        "content": "",
        "created_at": _now(ctx),
        "error": {"code": code, "message": failure.message, "retryable": retryable},
    }


def run_thread(ctx: task.OrchestrationContext, raw_state: Any) -> Generator[task.Task[Any], Any]:
    """One generation of a thread: wait for a message, answer it, continue as new."""
    log = ctx.create_replay_safe_logger(logger)
    state = ThreadState.from_input(raw_state)
    history = EntityInstanceId(ENTITY_NAME, ctx.instance_id)

    if not state.initialized:
        yield ctx.call_entity(
            history,
            "init",
            input={
                "system_prompt": state.system_prompt,
                "metadata": state.metadata,
                "created_at": state.created_at,
            },
        )
        state = replace(state, initialized=True)

    ctx.set_custom_status(thread_status(state, state.last_state, _now(ctx)))
    event = yield ctx.wait_for_external_event(USER_MESSAGE_EVENT)

    try:
        message = UserMessage.from_event(event)
    except DurableAgentError as bad:
        log.warning(
            "thread %s: skipped a malformed %s event: %s", ctx.instance_id, USER_MESSAGE_EVENT, bad.message
        )
        ctx.continue_as_new(state.to_dict(), save_events=True)
        return

    if message.id in state.recent_ids:
        ctx.continue_as_new(state.to_dict(), save_events=True)
        return

    user_entry = {"id": message.id, "role": "user", "content": message.content, "created_at": _now(ctx)}
    appended = yield ctx.call_entity(history, "append", input=user_entry)
    if appended.get("duplicate"):
        log.info("thread %s: message %s was already answered; skipped", ctx.instance_id, message.id)
        ctx.continue_as_new(state.to_dict(), save_events=True)
        return

    in_progress = replace(state, turn=state.turn + 1, last_message_id=message.id)
    ctx.set_custom_status(thread_status(in_progress, "thinking", _now(ctx)))

    window = yield ctx.call_entity(history, "window", input={"budget_bytes": state.context_window_bytes})
    request = ModelRequest(
        thread_id=ctx.instance_id,
        turn=state.turn + 1,
        messages=[ChatMessage.from_dict(m) for m in window],
    )
    try:
        result = yield ctx.call_activity(MODEL_ACTIVITY, input=request.to_dict())
        entry = _assistant_entry(ctx, message, ModelReply.from_dict(result))
        outcome: ThreadStateName = "idle"
    except task.TaskFailedError as failed:
        log.warning("thread %s: turn %d failed: %s", ctx.instance_id, request.turn, failed.details.message)
        entry = _error_entry(ctx, message, failed.details)
        outcome = "error"
    except (KeyError, TypeError, ValueError) as malformed:
        # A reply the activity should never produce; the thread must outlive it all the same.
        details = task.FailureDetails(f"malformed model reply: {malformed}", "ModelCallError", None)
        entry = _error_entry(ctx, message, details)
        outcome = "error"

    yield ctx.call_entity(history, "append", input=entry)
    next_state = state.after_turn(message.id, outcome)
    ctx.set_custom_status(thread_status(next_state, outcome, _now(ctx)))
    ctx.continue_as_new(next_state.to_dict(), save_events=True)


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATION_NAME)
def thread(context: task.OrchestrationContext, raw_state: Any) -> Generator[task.Task[Any], Any]:
    yield from run_thread(context, raw_state)
