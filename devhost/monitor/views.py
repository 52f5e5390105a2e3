"""What the monitor's JSON routes return: orchestration states and histories as plain JSON.

Pure functions over durabletask's client types, so they hold no I/O and work the same
against every backend. Payloads (inputs, outputs, custom status) are parsed when they are
JSON and passed through as strings otherwise; the page renders all of it as text.
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

from durabletask import history
from durabletask.client import OrchestrationState, OrchestrationStatus

#: events that finish something an earlier event started, and the field naming it
_COMPLETIONS: dict[type[history.HistoryEvent], str] = {
    history.TaskCompletedEvent: "task_scheduled_id",
    history.TaskFailedEvent: "task_scheduled_id",
    history.SubOrchestrationInstanceCompletedEvent: "task_scheduled_id",
    history.SubOrchestrationInstanceFailedEvent: "task_scheduled_id",
    history.TimerFiredEvent: "timer_id",
}
_ENTITY_STARTS = (history.EntityOperationCalledEvent,)
#: timeline types that a later event completes
_STARTS = frozenset(
    {"TaskScheduled", "SubOrchestrationInstanceCreated", "TimerCreated", "EntityOperationCalled"}
)
_ENTITY_COMPLETIONS = (history.EntityOperationCompletedEvent, history.EntityOperationFailedEvent)
#: payload fields, in the order the page shows them
_PAYLOAD_FIELDS = ("input", "result", "output", "data")


def status_name(status: OrchestrationStatus) -> str:
    """`CONTINUED_AS_NEW` -> `ContinuedAsNew`, as the Durable Functions APIs spell it."""
    return "".join(word.capitalize() for word in status.name.split("_"))


def known(moment: datetime | None) -> datetime | None:
    """The timestamp, or None when the backend left it unset (the protobuf default, 1970)."""
    if moment is None or moment.year <= 1970:
        return None
    return moment


def iso(moment: datetime | None) -> str | None:
    """A UTC timestamp as ISO 8601 with a `Z`; naive datetimes are taken as UTC."""
    moment = known(moment)
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


def parse_payload(raw: str | None) -> Any:
    """A serialized payload as JSON when it is JSON, else the string itself."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _failure(details: Any) -> dict[str, Any] | None:
    if details is None:
        return None
    return {
        "type": getattr(details, "error_type", None),
        "message": getattr(details, "message", None),
        "stack_trace": getattr(details, "stack_trace", None),
    }


def instance_summary(state: OrchestrationState) -> dict[str, Any]:
    """One row of the thread list: what the orchestration publishes about itself (its custom
    status; its input, when the query fetched it, fills gaps)."""
    custom = parse_payload(state.serialized_custom_status)
    status = custom if isinstance(custom, dict) else {}
    given = parse_payload(state.serialized_input)
    config = given if isinstance(given, dict) else {}
    inner = config.get("config")
    nested: dict[str, Any] = inner if isinstance(inner, dict) else {}
    agent = status.get("agent") or nested.get("agent") or config.get("agent")
    turn = status.get("turn", config.get("turn"))
    approvals = status.get("pending_approvals")
    return {
        "instance_id": state.instance_id,
        "name": state.name,
        "runtime_status": status_name(state.runtime_status),
        "agent": agent if isinstance(agent, str) else None,
        "state": status.get("state") if isinstance(status.get("state"), str) else None,
        "turn": turn if isinstance(turn, int) else None,
        "pending_approvals": len(approvals) if isinstance(approvals, list) else 0,
        "created_at": iso(state.created_at),
        "last_updated_at": iso(state.last_updated_at),
    }


def instance_detail(state: OrchestrationState) -> dict[str, Any]:
    """Everything the backend knows about one instance, payloads parsed."""
    custom = parse_payload(state.serialized_custom_status)
    approvals = custom.get("pending_approvals") if isinstance(custom, dict) else None
    return {
        **instance_summary(state),
        "custom_status": custom,
        "input": parse_payload(state.serialized_input),
        "output": parse_payload(state.serialized_output),
        "failure": _failure(state.failure_details),
        "approvals": [a for a in approvals if isinstance(a, dict)] if isinstance(approvals, list) else [],
    }


def _event_type(event: history.HistoryEvent) -> str:
    name = type(event).__name__
    return name.removesuffix("Event") or name


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json_safe(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _event_name(event: history.HistoryEvent) -> str | None:
    for attribute in ("name", "operation"):
        value = getattr(event, attribute, None)
        if isinstance(value, str) and value:
            target = getattr(event, "target_instance_id", None)
            return f"{value} → {target}" if attribute == "operation" and target else value
    if isinstance(event, history.TimerCreatedEvent):
        return f"fires {iso(event.fire_at)}"
    return None


def _details(event: history.HistoryEvent) -> dict[str, Any]:
    """The event's fields other than the ones the timeline shows in its columns."""
    shown = {"event_id", "timestamp", "name", "failure_details", *_PAYLOAD_FIELDS}
    return {
        f.name: _json_safe(getattr(event, f.name))
        for f in fields(event)
        if f.name not in shown and getattr(event, f.name) not in (None, "", [], {})
    }


def history_timeline(events: list[history.HistoryEvent]) -> list[dict[str, Any]]:
    """The history as timeline rows. A row that completes an earlier one (task, timer,
    sub-orchestration, entity call) names it in `completes` and carries `duration_ms` since
    it was scheduled (None when the backend does not stamp events); the scheduled row gets
    `completed_by` and the same duration, or `open` while nothing has completed it."""
    rows: list[dict[str, Any]] = []
    by_event_id: dict[int, dict[str, Any]] = {}
    by_request_id: dict[str, dict[str, Any]] = {}
    start = next((e.timestamp for e in events if known(e.timestamp)), None)
    for index, event in enumerate(events):
        row: dict[str, Any] = {
            "index": index,
            "event_id": event.event_id,
            "type": _event_type(event),
            "name": _event_name(event),
            "timestamp": iso(event.timestamp),
            "offset_ms": _ms(known(event.timestamp), start),
        }
        for attribute in _PAYLOAD_FIELDS:
            if hasattr(event, attribute):
                row[attribute] = parse_payload(getattr(event, attribute))
        failure = _failure(getattr(event, "failure_details", None))
        if failure is not None:
            row["failure"] = failure
        row["details"] = _details(event)
        scheduled: dict[str, Any] | None = None
        link = _COMPLETIONS.get(type(event))
        if link is not None:
            scheduled = by_event_id.get(getattr(event, link))
        elif isinstance(event, _ENTITY_COMPLETIONS):
            scheduled = by_request_id.get(event.request_id)
        if scheduled is not None:
            duration = _ms(known(event.timestamp), _timestamp(scheduled))
            row["completes"] = scheduled["index"]
            row["duration_ms"] = duration
            row["name"] = row["name"] or scheduled["name"]
            scheduled["completed_by"] = index
            scheduled["duration_ms"] = duration
        if isinstance(event, _ENTITY_STARTS):
            by_request_id[event.request_id] = row
        elif event.event_id >= 0:
            by_event_id.setdefault(event.event_id, row)
        row["_timestamp"] = event.timestamp
        rows.append(row)
    for row in rows:
        del row["_timestamp"]
        if row["type"] in _STARTS and "completed_by" not in row:
            row["open"] = True  # scheduled and not completed (yet)
    return rows


def _timestamp(row: dict[str, Any]) -> datetime | None:
    return known(row["_timestamp"])


def _ms(moment: datetime | None, since: datetime | None) -> float | None:
    """Milliseconds from `since` to `moment`; None when either is unknown."""
    if moment is None or since is None:
        return None
    return round((_utc(moment) - _utc(since)).total_seconds() * 1000, 1)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def entity_view(entity: Any) -> dict[str, Any]:
    """An entity's metadata and state (parsed when it is JSON)."""
    raw = entity.get_state()
    return {
        "id": str(entity.id),
        "last_modified": iso(getattr(entity, "last_modified", None)),
        "backlog_queue_size": getattr(entity, "backlog_queue_size", None),
        "state": parse_payload(raw) if isinstance(raw, str) else _json_safe(raw),
    }
