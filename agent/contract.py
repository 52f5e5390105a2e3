"""The app's durable contract: every orchestration, entity, activity and event name.

Blueprints register functions under these names and call each other by them; no blueprint
imports another for a constant. Renaming one is a breaking change for every thread in a
task hub (replay matches names), so each is spelled once, here.
"""

from __future__ import annotations

# Orchestrations
THREAD_ORCHESTRATION = "thread"
MAINTENANCE_ORCHESTRATION = "maintenance"
#: the one maintenance instance of a task hub
MAINTENANCE_INSTANCE_ID = "durable-agent-maintenance"

# Activities
CALL_MODEL_ACTIVITY = "call_model"
RUN_TOOL_ACTIVITY = "run_tool"
SWEEP_ACTIVITY = "sweep_threads"

# Entities. A thread's entities are keyed by the thread id, or by `{thread id}~{suffix}`
# ('~' never occurs in a thread id), so one key prefix finds every piece of a thread.
THREAD_ENTITY = "thread"
PAGE_ENTITY = "history_page"
BLOB_ENTITY = "history_blob"
MESSAGE_ENTITY = "message"
#: per-caller usage for rate limits (key: a digest of the caller, never the caller itself)
CALLER_ENTITY = "caller"
#: the single-blob history of threads written before paging (kept for upgrades)
LEGACY_HISTORY_ENTITY = "history"
KEY_SEPARATOR = "~"

# External events
USER_MESSAGE_EVENT = "user_message"
APPROVAL_EVENT = "approval"


def approval_event(call_id: str) -> str:
    """The event that decides one tool call's approval (one name per call, so a wait left
    over from an earlier, timed-out approval can never take a later decision)."""
    return f"{APPROVAL_EVENT}:{call_id}"


def child_key(thread_id: str, suffix: str | int) -> str:
    """The key of one of a thread's entities other than its root (`THREAD_ENTITY`)."""
    return f"{thread_id}{KEY_SEPARATOR}{suffix}"
