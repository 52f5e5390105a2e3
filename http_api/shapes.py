"""The thread API's shapes and small helpers: summaries, tokens, status names, backend errors.

Split from threads.py (the service) so each stays one concept: this module knows how a
thread is reported, threads.py how it is operated.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from durabletask.client import (
    OrchestrationState,
    OrchestrationStatus,
)

from agent.errors import BackendUnavailableError, ConflictError, InvalidInputError, NotFoundError
from agent.thread import ThreadConfig, ThreadState, ThreadStatus, utc_text

ACCEPTS_MESSAGES = {
    OrchestrationStatus.PENDING,
    OrchestrationStatus.RUNNING,
    OrchestrationStatus.CONTINUED_AS_NEW,
    OrchestrationStatus.SUSPENDED,
}


def utc_now() -> str:
    return utc_text(datetime.now(UTC))


def status_name(status: OrchestrationStatus) -> str:
    """The runtime status the API reports. A live thread is `Running`, also in the moment
    between two generations (continue-as-new) when a backend may report it pending."""
    if status in (OrchestrationStatus.PENDING, OrchestrationStatus.CONTINUED_AS_NEW):
        return "Running"
    return "".join(word.capitalize() for word in status.name.split("_"))


def encode_token(backend_token: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"v": 1, "c": backend_token}).encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    """The backend's continuation token inside one of ours; InvalidInputError for anything else."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if isinstance(data, dict) and data.get("v") == 1 and isinstance(data.get("c"), str):
            return str(data["c"])
    except (binascii.Error, ValueError):
        pass
    raise InvalidInputError("'continuation_token' is not a token this API returned; start again without it.")


@asynccontextmanager
async def backend_errors() -> AsyncIterator[None]:
    try:
        yield
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.ALREADY_EXISTS:
            raise ConflictError("This thread id is already in use; pick another id or omit it.") from None
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise InvalidInputError(f"The backend rejected the request: {error.details()}") from None
        if error.code() == grpc.StatusCode.NOT_FOUND:
            raise NotFoundError("No such thread.") from None
        raise BackendUnavailableError(
            f"The Durable Task backend did not answer ({error.code().name}); try again shortly."
        ) from None


@dataclass(frozen=True)
class ThreadSummary:
    thread_id: str
    agent: str
    state: str
    turn: int
    message_count: int
    created_at: str | None
    updated_at: str | None
    runtime_status: str
    metadata: dict[str, Any]
    generation: int = 0
    tools: tuple[str, ...] = ()
    pending_approvals: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["tools"] = list(self.tools)
        data["pending_approvals"] = [dict(p) for p in self.pending_approvals if "decision" not in p]
        return data


@dataclass(frozen=True)
class Accepted:
    """What POST /messages did with a message: queued it, found it already known, or asked
    for it to be answered again (then only a reply after `after_seq` is its answer)."""

    message_id: str
    duplicate: bool
    after_seq: int = 0


def parse_json(raw: str | None) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def thread_count(usage: Any) -> int:
    return int(usage.get("threads") or 0) if isinstance(usage, dict) else 0


def thread_config(raw_input: Any) -> ThreadConfig:
    if ThreadState.is_current(raw_input):
        return ThreadState.from_input(raw_input).config
    return ThreadConfig.from_dict(raw_input)  # an old input keeps these fields at its top level


def thread_owner(state: OrchestrationState) -> str | None:
    return thread_config(parse_json(state.serialized_input)).owner


def is_legacy(instance: OrchestrationState) -> bool:
    """True while a thread from before paged storage is not migrated: the status of a
    migrated (or new) thread is a ThreadStatus, set in the step that completes migration."""
    if ThreadStatus.from_dict(parse_json(instance.serialized_custom_status)) is not None:
        return False
    return not ThreadState.is_current(parse_json(instance.serialized_input))


def reply_outcome(message: Any, reply: Any) -> dict[str, Any]:
    if message is None:
        status = "queued"
    elif reply is None:
        status = "answering"
    else:
        status = "failed" if "error" in reply else "answered"
    return {"status": status, "message": message, "reply": reply}
