"""History-event and timestamp helpers shared by the hub's modules.

Why this module exists: everything the hub stores is either a protobuf message (history
events, failure details, activity requests) kept as bytes, or a wall-clock time kept as
float seconds since the epoch. These small converters keep that encoding in one place.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from durabletask.internal import helpers
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import timestamp_pb2, wrappers_pb2

TERMINAL_STATUSES: frozenset[int] = frozenset(
    {
        pb.ORCHESTRATION_STATUS_COMPLETED,
        pb.ORCHESTRATION_STATUS_FAILED,
        pb.ORCHESTRATION_STATUS_TERMINATED,
    }
)
RUNNING: int = pb.ORCHESTRATION_STATUS_RUNNING
PENDING: int = pb.ORCHESTRATION_STATUS_PENDING
SUSPENDED: int = pb.ORCHESTRATION_STATUS_SUSPENDED
COMPLETED: int = pb.ORCHESTRATION_STATUS_COMPLETED
FAILED: int = pb.ORCHESTRATION_STATUS_FAILED
TERMINATED: int = pb.ORCHESTRATION_STATUS_TERMINATED
CONTINUED_AS_NEW: int = pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW


def is_terminal(status: int) -> bool:
    return status in TERMINAL_STATUSES


def now() -> float:
    return time.time()


def to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def ts_seconds(ts: Any) -> float:
    """A ``google.protobuf.Timestamp`` as float epoch seconds."""
    return float(ts.seconds) + float(ts.nanos) / 1e9


def new_ts(seconds: float) -> Any:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(to_datetime(seconds))
    return ts


def string_value(value: str | None) -> Any:
    return wrappers_pb2.StringValue(value=value) if value is not None else None


def opt_string(msg: Any, field: str) -> str | None:
    """The value of an optional ``StringValue`` field, or None when it is not set."""
    if msg.HasField(field):
        return str(getattr(msg, field).value)
    return None


def encode(msg: Any) -> bytes:
    return bytes(msg.SerializeToString())


def decode_event(blob: bytes) -> Any:
    event = pb.HistoryEvent()
    event.ParseFromString(blob)
    return event


def decode_failure(blob: bytes | None) -> Any:
    if blob is None:
        return None
    details = pb.TaskFailureDetails()
    details.ParseFromString(blob)
    return details


def kind(event: Any) -> str:
    """The name of the ``eventType`` oneof that is set, e.g. ``"timerFired"``."""
    return str(event.WhichOneof("eventType"))


def stamped(event: Any, at: float | None = None) -> Any:
    """Gives an event a real timestamp (the SDK helpers leave it at the epoch)."""
    event.timestamp.CopyFrom(new_ts(now() if at is None else at))
    return event


def orchestrator_started(at: float) -> Any:
    return helpers.new_orchestrator_started_event(to_datetime(at))


def execution_started(
    name: str,
    instance_id: str,
    encoded_input: str | None,
    *,
    version: str | None,
    tags: dict[str, str] | None = None,
    execution_id: str | None = None,
    parent: Any = None,
    parent_trace_context: Any = None,
) -> Any:
    event = helpers.new_execution_started_event(
        name,
        instance_id,
        encoded_input,
        tags or None,
        version=version,
        parent_trace_context=parent_trace_context,
    )
    if execution_id:
        event.executionStarted.orchestrationInstance.executionId.value = execution_id
    if parent is not None:
        event.executionStarted.parentInstance.CopyFrom(parent)
    return stamped(event)
