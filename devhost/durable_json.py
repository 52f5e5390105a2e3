"""Durable Functions' JSON shapes for what the durabletask client returns.

The management API answers in the shapes the Durable Functions extension uses, so tools
and scripts written against `func start` or Azure work against devhost: instance status
(`runtimeStatus`, `createdTime`, ...), execution history (`historyEvents` with
`EventType`, `Timestamp`, `FunctionName`, `ScheduledTime`, `Result`...), and entities
(`entityId: {name, key}`, `lastOperationTime`, `state`).

History follows the extension's conversion: scheduling events (`TaskScheduled`,
`SubOrchestrationInstanceCreated`) and replay markers (`OrchestratorStarted`,
`OrchestratorCompleted`) are folded away; a completion names the function it completes
and the time it was scheduled. Payloads (`Input`, `Result`) are included only when asked
for (`showHistoryOutput=true`), as in Durable Functions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from durabletask import history
from durabletask.client import OrchestrationState, OrchestrationStatus
from durabletask.entities import EntityMetadata

#: runtimeStatus names as Durable Functions spells them
STATUS_NAMES = {
    status: "".join(w.capitalize() for w in status.name.split("_")) for status in OrchestrationStatus
}
STATUS_BY_NAME = {name.lower(): status for status, name in STATUS_NAMES.items()}
TERMINAL = frozenset(
    {OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED, OrchestrationStatus.TERMINATED}
)

_FOLDED = (
    history.TaskScheduledEvent,
    history.SubOrchestrationInstanceCreatedEvent,
    history.OrchestratorStartedEvent,
    history.OrchestratorCompletedEvent,
)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def instance_time(value: datetime) -> str:
    """Instance times as Durable Functions writes them: whole seconds, `Z`."""
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_time(value: datetime) -> str:
    """History times with their fraction, `Z`."""
    return _utc(value).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An ISO 8601 timestamp from a query string; naive means UTC. ValueError if it is not one."""
    value = datetime.fromisoformat(text.strip().replace(" ", "+"))
    return _utc(value)


def payload(raw: str | None) -> Any:
    """A serialized JSON payload as JSON (the raw text if it is not JSON)."""
    if raw is None or raw == "":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def instance_status(state: OrchestrationState, *, show_input: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": state.name,
        "instanceId": state.instance_id,
        "runtimeStatus": STATUS_NAMES[state.runtime_status],
        "input": payload(state.serialized_input) if show_input else None,
        "customStatus": payload(state.serialized_custom_status),
        "output": payload(state.serialized_output),
        "createdTime": instance_time(state.created_at),
        "lastUpdatedTime": instance_time(state.last_updated_at),
    }
    if state.failure_details is not None:
        body["output"] = state.failure_details.message
    return body


def _event_type(event: history.HistoryEvent) -> str:
    name = type(event).__name__
    return name if name == "GenericEvent" else name.removesuffix("Event")


def _failure(details: Any) -> dict[str, Any]:
    if details is None:
        return {}
    return {
        "Reason": details.message,
        "FailureDetails": {"ErrorType": details.error_type, "ErrorMessage": details.message},
    }


def history_events(events: list[history.HistoryEvent], *, show_output: bool) -> list[dict[str, Any]]:
    """`historyEvents` as Durable Functions returns them for `showHistory=true`."""
    scheduled: dict[int, history.HistoryEvent] = {
        e.event_id: e
        for e in events
        if isinstance(e, history.TaskScheduledEvent | history.SubOrchestrationInstanceCreatedEvent)
    }
    converted: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, _FOLDED):
            continue
        item: dict[str, Any] = {"EventType": _event_type(event)}
        data: Any = _NO_PAYLOAD
        match event:
            case history.ExecutionStartedEvent():
                item["FunctionName"] = event.name
                data = ("Input", event.input)
                if event.scheduled_start_timestamp is not None:
                    item["ScheduledStartTime"] = event_time(event.scheduled_start_timestamp)
            case history.ExecutionCompletedEvent():
                item["OrchestrationStatus"] = STATUS_NAMES.get(
                    OrchestrationStatus(event.orchestration_status), str(event.orchestration_status)
                )
                item.update(_failure(event.failure_details))
                data = ("Result", event.result)
            case history.TaskCompletedEvent() | history.SubOrchestrationInstanceCompletedEvent():
                item.update(_origin(scheduled.get(event.task_scheduled_id)))
                data = ("Result", event.result)
            case history.TaskFailedEvent() | history.SubOrchestrationInstanceFailedEvent():
                item.update(_origin(scheduled.get(event.task_scheduled_id)))
                item.update(_failure(event.failure_details))
            case history.TimerCreatedEvent():
                item["FireAt"] = event_time(event.fire_at)
            case history.TimerFiredEvent():
                item["FireAt"] = event_time(event.fire_at)
                item["TimerId"] = event.timer_id
            case history.EventRaisedEvent():
                item["Name"] = event.name
                data = ("Input", event.input)
            case history.EventSentEvent():
                item["Name"] = event.name
                item["InstanceId"] = event.instance_id
                data = ("Input", event.input)
            case history.ExecutionTerminatedEvent() | history.ContinueAsNewEvent():
                data = ("Input", event.input)
            case history.ExecutionSuspendedEvent() | history.ExecutionResumedEvent():
                if event.input:
                    item["Reason"] = payload(event.input)
            case history.EntityOperationSignaledEvent() | history.EntityOperationCalledEvent():
                item["Operation"] = event.operation
                item["TargetInstanceId"] = event.target_instance_id
                data = ("Input", event.input)
            case history.EntityOperationCompletedEvent():
                item["RequestId"] = event.request_id
                data = ("Result", event.output)
            case history.EntityOperationFailedEvent():
                item["RequestId"] = event.request_id
                item.update(_failure(event.failure_details))
        if show_output and data is not _NO_PAYLOAD:
            item[data[0]] = payload(data[1])
        item["Timestamp"] = event_time(event.timestamp)
        converted.append(item)
    return converted


_NO_PAYLOAD = object()


def _origin(event: history.HistoryEvent | None) -> dict[str, Any]:
    if isinstance(event, history.TaskScheduledEvent):
        return {"FunctionName": event.name, "ScheduledTime": event_time(event.timestamp)}
    if isinstance(event, history.SubOrchestrationInstanceCreatedEvent):
        return {
            "FunctionName": event.name,
            "InstanceId": event.instance_id,
            "ScheduledTime": event_time(event.timestamp),
        }
    return {}


def entity(metadata: EntityMetadata, *, with_state: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "entityId": {"name": metadata.id.entity, "key": metadata.id.key},
        "lastOperationTime": event_time(metadata.last_modified),
    }
    if with_state:
        body["state"] = entity_state(metadata)
    return body


def entity_state(metadata: EntityMetadata) -> Any:
    raw = metadata.get_state() if metadata.includes_state else None
    return payload(raw) if isinstance(raw, str) else raw
