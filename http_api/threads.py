"""Thread operations behind the HTTP API, over the Durable Functions client.

The routes in routes.py parse requests and shape responses; this module knows how a
thread maps onto Durable Task: an orchestration instance named `thread` (instance id =
thread id) plus a `history` entity with the same key. Backend failures become
`BackendUnavailableError` so callers get a 503 instead of a stack trace.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from durabletask.client import (
    AsyncTaskHubGrpcClient,
    OrchestrationState,
    OrchestrationStatus,
    parse_orchestration_state,
)
from durabletask.entities import EntityInstanceId
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2

from agent import history
from agent.errors import BackendUnavailableError, ConflictError, InvalidInputError, NotFoundError
from agent.settings import Settings
from agent.thread import ORCHESTRATION_NAME, USER_MESSAGE_EVENT, ThreadState, UserMessage
from entities.history import ENTITY_NAME

ACCEPTS_MESSAGES = {
    OrchestrationStatus.PENDING,
    OrchestrationStatus.RUNNING,
    OrchestrationStatus.CONTINUED_AS_NEW,
    OrchestrationStatus.SUSPENDED,
}
DELETE_TIMEOUT_SECONDS = 15.0


def utc_now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def status_name(status: OrchestrationStatus) -> str:
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
            raise ConflictError("A thread with this id already exists.") from None
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
    state: str
    turn: int
    message_count: int | None
    created_at: str | None
    updated_at: str | None
    runtime_status: str
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if data["message_count"] is None:
            del data["message_count"]
        return data


class ThreadService:
    """Thread operations for one caller. With a `principal` (App Service Authentication),
    the caller sees and changes only the threads it created."""

    def __init__(self, client: AsyncTaskHubGrpcClient, principal: str | None = None) -> None:
        self._client = client
        self._principal = principal

    def _entity(self, thread_id: str) -> EntityInstanceId:
        return EntityInstanceId(ENTITY_NAME, thread_id)

    async def _instance(self, thread_id: str) -> OrchestrationState:
        async with backend_errors():
            state = await self._client.get_orchestration_state(thread_id, fetch_payloads=True)
        if state is None or state.name != ORCHESTRATION_NAME or not self._owns(state):
            # Someone else's thread is reported exactly like a missing one.
            raise NotFoundError(f"Thread '{thread_id}' does not exist.")
        return state

    def _owns(self, state: OrchestrationState) -> bool:
        if self._principal is None:
            return True
        return ThreadState.from_input(json.loads(state.serialized_input or "null")).owner == self._principal

    async def _history(self, thread_id: str) -> history.HistoryState:
        async with backend_errors():
            entity = await self._client.get_entity(self._entity(thread_id), include_state=True)
        if entity is None:
            return history.HistoryState()
        raw = entity.get_state()
        return history.HistoryState.from_dict(json.loads(raw) if raw else None)

    def _summary(self, instance: OrchestrationState, message_count: int | None) -> ThreadSummary:
        status = json.loads(instance.serialized_custom_status or "null") or {}
        thread = ThreadState.from_input(json.loads(instance.serialized_input or "null"))
        return ThreadSummary(
            thread_id=instance.instance_id,
            state=str(status.get("state", "idle")),
            turn=int(status.get("turn", thread.turn)),
            message_count=message_count,
            created_at=thread.created_at,
            updated_at=status.get("updated_at") or thread.created_at,
            runtime_status=status_name(instance.runtime_status),
            metadata=thread.metadata,
        )

    async def create(self, thread_id: str, metadata: dict[str, Any], settings: Settings) -> ThreadSummary:
        async with backend_errors():
            existing = await self._client.get_orchestration_state(thread_id, fetch_payloads=False)
        if existing is not None:
            raise ConflictError(f"Thread id '{thread_id}' is already in use; pick another id or omit it.")
        state = ThreadState(
            created_at=utc_now(),
            system_prompt=settings.system_prompt,
            context_window_bytes=settings.context_window_bytes,
            metadata=metadata,
            owner=self._principal,
        )
        async with backend_errors():
            await self._client.schedule_new_orchestration(
                ORCHESTRATION_NAME, input=state.to_dict(), instance_id=thread_id
            )
        return ThreadSummary(
            thread_id=thread_id,
            state="idle",
            turn=0,
            message_count=0,
            created_at=state.created_at,
            updated_at=state.created_at,
            runtime_status="Pending",
            metadata=metadata,
        )

    async def get(self, thread_id: str) -> ThreadSummary:
        instance = await self._instance(thread_id)
        entries = (await self._history(thread_id)).entries
        return self._summary(instance, sum(1 for e in entries if e["role"] != "system"))

    async def list(self, limit: int, token: str | None) -> tuple[list[ThreadSummary], str | None]:
        continuation = decode_token(token) if token else None
        request = pb.QueryInstancesRequest(
            query=pb.InstanceQuery(
                maxInstanceCount=limit,
                fetchInputsAndOutputs=True,
                continuationToken=wrappers_pb2.StringValue(value=continuation) if continuation else None,
            )
        )
        async with backend_errors():
            response = await self._client._get_stub().QueryInstances(request)
        states = [self._state_from_proto(s) for s in response.orchestrationState]
        threads = [self._summary(s, None) for s in states if s.name == ORCHESTRATION_NAME and self._owns(s)]
        next_token = response.continuationToken.value if response.HasField("continuationToken") else ""
        return threads, encode_token(next_token) if next_token else None

    @staticmethod
    def _state_from_proto(proto: Any) -> OrchestrationState:
        parsed: OrchestrationState = parse_orchestration_state(proto)
        return parsed

    async def post_message(self, thread_id: str, message: UserMessage) -> None:
        instance = await self._instance(thread_id)
        if instance.runtime_status not in ACCEPTS_MESSAGES:
            raise ConflictError(
                f"Thread '{thread_id}' is {status_name(instance.runtime_status)} and takes no more messages."
            )
        async with backend_errors():
            await self._client.raise_orchestration_event(
                thread_id, USER_MESSAGE_EVENT, data=message.to_dict()
            )

    async def messages(self, thread_id: str, after: int, limit: int) -> dict[str, Any]:
        await self._instance(thread_id)
        return history.page(await self._history(thread_id), after=after, limit=limit)

    async def reply(self, thread_id: str, message_id: str) -> dict[str, Any]:
        """The message and its reply; status queued, answering, answered or failed."""
        await self._instance(thread_id)
        message, reply = history.find_reply(await self._history(thread_id), message_id)
        if message is None:
            status = "queued"
        elif reply is None:
            status = "answering"
        else:
            status = "failed" if "error" in reply else "answered"
        return {
            "thread_id": thread_id,
            "message_id": message_id,
            "status": status,
            "message": message,
            "reply": reply,
        }

    async def wait_for_reply(self, thread_id: str, message_id: str, seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        delay = 0.01
        while True:
            found = await self.reply(thread_id, message_id)
            remaining = deadline - time.monotonic()
            if found["status"] in ("answered", "failed") or remaining <= 0:
                return found
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 0.25)

    async def delete(self, thread_id: str) -> None:
        instance = await self._instance(thread_id)
        async with backend_errors():
            if instance.runtime_status in ACCEPTS_MESSAGES:
                await self._client.terminate_orchestration(thread_id, recursive=True)
                await self._until(lambda: self._is_terminal(thread_id), "terminate")
            await self._client.purge_orchestration(thread_id, recursive=True)
            await self._client.signal_entity(self._entity(thread_id), "delete")
            await self._until(lambda: self._entity_gone(thread_id), "delete the history of")

    async def _is_terminal(self, thread_id: str) -> bool:
        state = await self._client.get_orchestration_state(thread_id, fetch_payloads=False)
        return state is None or state.runtime_status not in ACCEPTS_MESSAGES

    async def _entity_gone(self, thread_id: str) -> bool:
        # Some backends keep a stateless record of a deleted entity; no state means gone.
        entity = await self._client.get_entity(self._entity(thread_id), include_state=True)
        return entity is None or not entity.get_state()

    async def _until(self, check: Any, what: str) -> None:
        deadline = time.monotonic() + DELETE_TIMEOUT_SECONDS
        while not await check():
            if time.monotonic() > deadline:
                raise BackendUnavailableError(f"Timed out waiting to {what} the thread; retry the DELETE.")
            await asyncio.sleep(0.05)
