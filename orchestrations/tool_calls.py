"""One round of tool calls inside a thread's turn: approvals first, then every call at once.

The model asked for some tools. Calls whose tool needs approval wait for a person: the
thread shows them as pending approvals and waits for one `approval:{call id}` event per
call, raced against a durable timer (APPROVAL_TIMEOUT_SECONDS, fixed when the thread was
created). Then every call that may run runs as its own `run_tool` activity, all in
parallel (`when_all`); a completed call is never run again on replay. A denial, a timeout
or a failing tool becomes the call's result (with the reason), which goes back to the
model; it never fails the turn. Messages that arrive meanwhile wait in the orchestration's
event buffer and are answered afterwards, in order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from durabletask import task

from agent.contract import RUN_TOOL_ACTIVITY, approval_event
from agent.thread import ThreadStateName

logger = logging.getLogger(__name__)

#: publishes the thread's status: (state, running tool names, pending approvals)
StatusPublisher = Callable[[ThreadStateName, tuple[str, ...], tuple[dict[str, Any], ...]], None]


@dataclass(frozen=True)
class ToolOutcome:
    call_id: str
    name: str
    content: str
    is_error: bool
    #: "approved", "denied" or "timed_out" for calls that needed approval
    approval: str | None = None


def _arguments(raw: Any) -> Any:
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return raw


def _decision(value: Any) -> tuple[bool, str]:
    """(approved, reason) from an approval event; anything but approve=true is a denial."""
    if not isinstance(value, dict):
        return False, "the decision was not understood"
    reason = value.get("reason")
    return value.get("approve") is True, reason if isinstance(reason, str) else ""


def run_tool_calls(
    ctx: task.OrchestrationContext,
    *,
    agent: str,
    calls: Sequence[dict[str, Any]],
    approval_timeout_seconds: float,
    publish: StatusPublisher,
) -> Generator[task.Task[Any], Any, list[ToolOutcome]]:
    log = ctx.create_replay_safe_logger(logger)
    decided: dict[str, ToolOutcome | None] = {}  # None: approved, may run
    needing = [c for c in calls if c.get("needs_approval")]
    if needing:
        pending = {
            str(c["id"]): {
                "call_id": str(c["id"]),
                "tool": str(c["name"]),
                "arguments": _arguments(c.get("arguments")),
                "approve_url": f"/api/threads/{ctx.instance_id}/approvals/{c['id']}",
            }
            for c in needing
        }
        publish("awaiting_approval", (), tuple(pending.values()))
        timer = ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=approval_timeout_seconds))
        waiting = {call_id: ctx.wait_for_external_event(approval_event(call_id)) for call_id in pending}
        while waiting:
            winner = yield task.when_any([*waiting.values(), timer])
            if winner is timer:
                for call_id in waiting:
                    name = pending[call_id]["tool"]
                    text = f"timed out: nobody approved {name} within {approval_timeout_seconds:g} seconds"
                    decided[call_id] = ToolOutcome(call_id, name, text, True, "timed_out")
                break
            call_id = next(c for c, t in waiting.items() if t is winner)
            del waiting[call_id]
            approved, reason = _decision(winner.get_result())
            name = pending[call_id]["tool"]
            if approved:
                decided[call_id] = None
            else:
                text = f"denied: the user did not allow {name}" + (f" ({reason})" if reason else "")
                decided[call_id] = ToolOutcome(call_id, name, text, True, "denied")
            pending[call_id] = {**pending[call_id], "decision": "approved" if approved else "denied"}
            if waiting:
                publish("awaiting_approval", (), tuple(pending.values()))
        log.info("thread %s: approvals decided for %d tool calls", ctx.instance_id, len(needing))

    runnable = [c for c in calls if decided.get(str(c["id"])) is None]
    publish("running_tools", tuple(str(c["name"]) for c in runnable), ())
    tasks: list[task.Task[Any]] = [
        ctx.call_activity(
            RUN_TOOL_ACTIVITY,
            input={
                "thread_id": ctx.instance_id,
                "agent": agent,
                "call": {"id": c["id"], "name": c["name"], "arguments": c.get("arguments") or "{}"},
            },
        )
        for c in runnable
    ]
    results: dict[str, ToolOutcome] = {}
    if tasks:
        try:
            outputs = yield task.when_all(tasks)
        except (
            task.TaskFailedError
        ) as failed:  # run_tool reports tool errors as results; this is the host failing
            outputs = [{"content": f"error: {failed.details.message}", "is_error": True} for _ in runnable]
        for call, output in zip(runnable, outputs, strict=True):
            output = output if isinstance(output, dict) else {}
            results[str(call["id"])] = ToolOutcome(
                str(call["id"]),
                str(call["name"]),
                str(output.get("content", "")),
                output.get("is_error") is True,
                "approved" if call.get("needs_approval") else None,
            )
    return [results.get(str(c["id"])) or decided[str(c["id"])] or _missing(c) for c in calls]


def _missing(call: dict[str, Any]) -> ToolOutcome:
    return ToolOutcome(str(call["id"]), str(call["name"]), "error: the tool did not run", True)
