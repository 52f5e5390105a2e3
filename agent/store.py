"""Reads and deletes a thread's stored pieces through the Durable Task client (an I/O adapter).

The HTTP API reads pages, blobs and message records with it, and both `DELETE
/api/threads/{id}` and the maintenance sweep delete a thread's storage with it. Every read
is a plain client call, so it works the same against devhost's backends and Azure's
Durable Task Scheduler. A read may carry a long-poll hint (two gRPC metadata headers):
devhost's SQLite hub then answers when the entity changes instead of at once; other
backends ignore the hint and answer at once, and the caller's own polling takes over.

Deletion finds pieces by entity-id prefix (every piece of thread T is keyed `T` or `T~...`),
signals `delete` to each, children before the root, and waits until none is left, so a
deletion cut short by a crash is finished by running it again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from durabletask.client import AsyncTaskHubGrpcClient, OrchestrationStatus
from durabletask.entities import EntityInstanceId
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2

from agent import history
from agent.contract import (
    BLOB_ENTITY,
    CALLER_ENTITY,
    KEY_SEPARATOR,
    LEGACY_HISTORY_ENTITY,
    MESSAGE_ENTITY,
    PAGE_ENTITY,
    THREAD_ENTITY,
    child_key,
)
from agent.errors import BackendUnavailableError

WAIT_MS_HEADER = "x-durable-agent-wait-ms"
SINCE_HEADER = "x-durable-agent-if-changed-since"
#: entities a read of one page may touch: the page and a blob per entry
MAX_PAGE_BYTES = 1024 * 1024
QUERY_PAGE_SIZE = 500


@dataclass(frozen=True)
class EntityRead:
    exists: bool
    state: Any
    #: the backend's last-modified time, seconds since the epoch (0 when absent)
    modified: float


def _entity_id(name: str, key: str) -> str:
    return str(EntityInstanceId(name, key))


class ThreadStore:
    def __init__(self, client: AsyncTaskHubGrpcClient) -> None:
        self._client = client

    async def read(self, name: str, key: str, *, wait_ms: int = 0, seen: float | None = None) -> EntityRead:
        """One entity's state. With `wait_ms`, ask the backend to answer once it changes
        after `seen` (a hint; a backend may answer at once)."""
        metadata: list[tuple[str, str]] = []
        if wait_ms > 0:
            since = datetime.fromtimestamp(seen or 0.0, UTC).isoformat()
            metadata = [(WAIT_MS_HEADER, str(wait_ms)), (SINCE_HEADER, since)]
        request = pb.GetEntityRequest(instanceId=_entity_id(name, key), includeState=True)
        # The client's stub protocol omits gRPC's per-call metadata, which the real stub takes.
        stub: Any = self._client._get_stub()
        response: pb.GetEntityResponse = await stub.GetEntity(request, metadata=metadata or None)
        if not response.exists:
            return EntityRead(False, None, 0.0)
        entity = response.entity
        raw = entity.serializedState.value if entity.HasField("serializedState") else ""
        modified = (
            entity.lastModifiedTime.ToNanoseconds() / 1e9 if entity.HasField("lastModifiedTime") else 0.0
        )
        return EntityRead(True, json.loads(raw) if raw else None, modified)

    async def wait_instance(self, instance_id: str, *, seen: float, wait_ms: int) -> float:
        """Long-poll an orchestration instance; returns its last-updated time (0 if absent)."""
        metadata = [
            (WAIT_MS_HEADER, str(wait_ms)),
            (SINCE_HEADER, datetime.fromtimestamp(seen, UTC).isoformat()),
        ]
        stub: Any = self._client._get_stub()
        request = pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=False)
        response: pb.GetInstanceResponse = await stub.GetInstance(request, metadata=metadata)
        if not response.exists or not response.orchestrationState.HasField("lastUpdatedTimestamp"):
            return 0.0
        return float(response.orchestrationState.lastUpdatedTimestamp.ToNanoseconds() / 1e9)

    async def exists(self, name: str, key: str) -> bool:
        read = await self.read(name, key)
        return read.exists and read.state is not None

    async def page(self, thread_id: str, page: int) -> list[dict[str, Any]]:
        """A page's entries, with large entries read back from their blobs."""
        items = history.page_items((await self.read(PAGE_ENTITY, child_key(thread_id, page))).state)
        stubs = [i for i in items if history.is_stub(i)]
        if stubs:
            blobs = await asyncio.gather(
                *(self.read(BLOB_ENTITY, child_key(thread_id, int(s["seq"]))) for s in stubs)
            )
            # A blob's row can exist before its state does (its write is queued): then the
            # stub stays, and the entry reads as not written yet.
            full = {
                int(s["seq"]): b.state
                for s, b in zip(stubs, blobs, strict=True)
                if b.exists and isinstance(b.state, dict)
            }
            items = [full.get(int(i["seq"]), i) if history.is_stub(i) else i for i in items]
        return items

    async def entries(
        self, thread_id: str, *, after: int, limit: int, last_seq: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """Stored entries with seq > after, at most `limit` and about MAX_PAGE_BYTES; the
        flag says whether the byte bound cut the list short."""
        pages = history.pages_for(after, limit, last_seq)
        loaded = await asyncio.gather(*(self.page(thread_id, p) for p in pages))
        chosen: list[dict[str, Any]] = []
        size = 0
        for entry in (e for page in loaded for e in page):
            seq = int(entry["seq"])
            if seq <= after or seq > after + limit:
                continue
            entry_size = len(json.dumps(entry))
            if chosen and size + entry_size > MAX_PAGE_BYTES:
                return chosen, True
            chosen.append(entry)
            size += entry_size
        return chosen, False

    async def message(
        self, thread_id: str, message_id: str, *, wait_ms: int = 0, seen: float | None = None
    ) -> EntityRead:
        return await self.read(MESSAGE_ENTITY, child_key(thread_id, message_id), wait_ms=wait_ms, seen=seen)

    async def roots(self, name: str = THREAD_ENTITY) -> list[str]:
        """Keys of every entity named `name` (a thread's root, or a legacy history)."""
        return [_split(i)[1] for i in await self._query(f"@{name}@")]

    async def pieces(self, thread_id: str) -> tuple[list[str], list[str], list[str]]:
        """(children, roots, legacy): entity ids of every stored piece of the thread."""
        children: list[str] = []
        for name in (BLOB_ENTITY, MESSAGE_ENTITY, PAGE_ENTITY):
            children += await self._query(f"@{name}@{thread_id}{KEY_SEPARATOR}")
        roots = [
            i
            for i in await self._query(_entity_id(THREAD_ENTITY, thread_id))
            if i == _entity_id(THREAD_ENTITY, thread_id)
        ]
        legacy_id = _entity_id(LEGACY_HISTORY_ENTITY, thread_id)
        legacy = [i for i in await self._query(legacy_id) if i == legacy_id]
        return children, roots, legacy

    async def _query(self, prefix: str) -> list[str]:
        """Ids of the entities under `prefix` that hold state (a deleted entity may linger
        without state on some backends until storage is cleaned; it counts as gone)."""
        found: list[str] = []
        token: str | None = None
        while True:
            query = pb.EntityQuery(
                instanceIdStartsWith=wrappers_pb2.StringValue(value=prefix),
                includeState=True,
                pageSize=wrappers_pb2.Int32Value(value=QUERY_PAGE_SIZE),
                continuationToken=wrappers_pb2.StringValue(value=token) if token else None,
            )
            response: pb.QueryEntitiesResponse = await self._client._get_stub().QueryEntities(
                pb.QueryEntitiesRequest(query=query)
            )
            found += [
                e.instanceId
                for e in response.entities
                if e.instanceId.startswith(prefix)
                and e.HasField("serializedState")
                and e.serializedState.value
            ]
            token = response.continuationToken.value if response.HasField("continuationToken") else None
            if not token:
                return found

    async def delete(self, thread_id: str, *, within_seconds: float = 30.0) -> int:
        """Delete every stored piece of the thread; returns how many there were."""
        children, roots, legacy = await self.pieces(thread_id)
        total = len(children) + len(roots) + len(legacy)
        deadline = time.monotonic() + within_seconds
        for batch in (children, [*roots, *legacy]):
            await self._signal_delete(batch)
            await self._until_gone(batch, deadline)
        return total

    async def _signal_delete(self, entity_ids: Sequence[str]) -> None:
        for start in range(0, len(entity_ids), 64):
            await asyncio.gather(
                *(self._client.signal_entity(_parse(i), "delete") for i in entity_ids[start : start + 64])
            )

    async def _until_gone(self, entity_ids: Sequence[str], deadline: float) -> None:
        remaining = list(entity_ids)
        delay = 0.02
        while remaining:
            reads = await asyncio.gather(*(self.read(*_split(i)) for i in remaining))
            remaining = [i for i, r in zip(remaining, reads, strict=True) if r.exists and r.state is not None]
            if not remaining:
                return
            if time.monotonic() > deadline:
                raise BackendUnavailableError(
                    f"{len(remaining)} stored pieces of the thread are still being deleted; "
                    "send the DELETE again to finish."
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


LIVE = {
    OrchestrationStatus.PENDING,
    OrchestrationStatus.RUNNING,
    OrchestrationStatus.CONTINUED_AS_NEW,
    OrchestrationStatus.SUSPENDED,
}


async def delete_thread(
    client: AsyncTaskHubGrpcClient, thread_id: str, *, within_seconds: float = 30.0
) -> None:
    """Stop a thread, delete every stored piece, then purge its orchestration. The purge is
    last, so a deletion cut short leaves a thread that a second call finds and finishes."""
    deadline = time.monotonic() + within_seconds
    state = await client.get_orchestration_state(thread_id, fetch_payloads=True)
    caller = _caller_of(state.serialized_input if state is not None else None)
    if state is not None and state.runtime_status in LIVE:
        await client.terminate_orchestration(thread_id, recursive=True)
        while True:
            state = await client.get_orchestration_state(thread_id, fetch_payloads=False)
            if state is None or state.runtime_status not in LIVE:
                break
            if time.monotonic() > deadline:
                raise BackendUnavailableError("Timed out waiting for the thread to stop; retry the DELETE.")
            await asyncio.sleep(0.05)
    await ThreadStore(client).delete(thread_id, within_seconds=max(1.0, deadline - time.monotonic()))
    if state is not None:
        await client.purge_orchestration(thread_id, recursive=True)
        if caller:
            await client.signal_entity(EntityInstanceId(CALLER_ENTITY, caller), "thread_deleted")


def _caller_of(raw_input: str | None) -> str | None:
    """The caller entity a thread counts against (see agent.limits), from its input."""
    try:
        data = json.loads(raw_input) if raw_input else None
    except ValueError:
        return None
    config = data.get("config") if isinstance(data, dict) else None
    caller = config.get("caller") if isinstance(config, dict) else None
    return caller if isinstance(caller, str) else None


def _split(entity_id: str) -> tuple[str, str]:
    _, name, key = entity_id.split("@", 2)
    return name, key


def _parse(entity_id: str) -> EntityInstanceId:
    name, key = _split(entity_id)
    return EntityInstanceId(name, key)
