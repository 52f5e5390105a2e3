"""`?wait` wakes on the write it waits for, whatever order the durable steps land in.

`ThreadService.wait_for_reply` long-polls the backend (devhost's hub holds a `Get*` call
until the row changes). Under load the thread can finish a turn (its last status update)
before the entity batch that records the message has run; a waiter that then waited on
the thread's status would sleep through the whole long-poll, since that status does not
change again. Here a scripted backend, which honours the long-poll headers the way the
SQLite hub does, holds such a finished turn while the records land later, one by one.
The long-poll is made far longer than the test's deadline, so waiting on the wrong row
fails the test instead of only slowing it down.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from durabletask.client import AsyncTaskHubGrpcClient, OrchestrationState, OrchestrationStatus
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import timestamp_pb2, wrappers_pb2

from agent import history, storage_rules
from agent.contract import BLOB_ENTITY, MESSAGE_ENTITY, PAGE_ENTITY, THREAD_ORCHESTRATION, child_key
from agent.progress import Cursor, status_version
from agent.settings import load_settings
from agent.store import SINCE_HEADER, WAIT_MS_HEADER, _entity_id
from agent.thread import ThreadConfig, ThreadState, ThreadStatus
from http_api import threads
from http_api.threads import ThreadService

THREAD = "thread-wait-1"
MESSAGE = "m-1"


def _stamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.fromtimestamp(seconds, UTC))
    return stamp


@dataclass
class ScriptedBackend:
    """Entities and one instance; `Get*` calls with the long-poll headers wait for a change."""

    instance: OrchestrationState
    entities: dict[str, tuple[str, float]] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    waiting: list[str] = field(default_factory=list)
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    #: entity id -> a write made right after the next plain (not long-polling) read of it
    after_read: dict[str, tuple[str, str, Any]] = field(default_factory=dict)
    #: answer long-polls at once, like a backend that does not know the hint
    ignores_hints: bool = False

    async def put(self, name: str, key: str, state: Any) -> None:
        async with self.changed:
            self.entities[_entity_id(name, key)] = (json.dumps(state), time.time())
            self.changed.notify_all()

    def _modified(self, entity_id: str) -> float:
        found = self.entities.get(entity_id)
        return found[1] if found else 0.0

    async def _hold(self, what: str, modified: Any, metadata: Any) -> None:
        headers = dict(metadata or ())
        if WAIT_MS_HEADER not in headers or self.ignores_hints:
            return
        since = datetime.fromisoformat(headers[SINCE_HEADER]).timestamp()
        async with self.changed:
            self.waiting.append(what)
            self.holding.set()
            try:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: modified() > since + 1e-6),
                    int(headers[WAIT_MS_HEADER]) / 1000,
                )
            except TimeoutError:
                pass
            finally:
                self.waiting.remove(what)

    # -- the gRPC stub surface ThreadStore uses --------------------------------------------

    async def GetEntity(self, request: pb.GetEntityRequest, metadata: Any = None) -> pb.GetEntityResponse:
        entity_id = request.instanceId
        await self._hold(entity_id, lambda: self._modified(entity_id), metadata)
        found = self.entities.get(entity_id)
        if WAIT_MS_HEADER not in dict(metadata or ()) and entity_id in self.after_read:
            await self.put(*self.after_read.pop(entity_id))
        if found is None:
            return pb.GetEntityResponse(exists=False)
        state, modified = found
        return pb.GetEntityResponse(
            exists=True,
            entity=pb.EntityMetadata(
                instanceId=entity_id,
                lastModifiedTime=_stamp(modified),
                serializedState=wrappers_pb2.StringValue(value=state),
            ),
        )

    async def GetInstance(
        self, request: pb.GetInstanceRequest, metadata: Any = None
    ) -> pb.GetInstanceResponse:
        updated = self.instance.last_updated_at.replace(tzinfo=UTC).timestamp()
        await self._hold("instance", lambda: updated, metadata)
        state = pb.OrchestrationState(instanceId=request.instanceId, lastUpdatedTimestamp=_stamp(updated))
        return pb.GetInstanceResponse(exists=True, orchestrationState=state)

    # -- the client surface ThreadService uses ---------------------------------------------

    def _get_stub(self) -> ScriptedBackend:
        return self

    async def get_orchestration_state(
        self, instance_id: str, *, fetch_payloads: bool = True
    ) -> OrchestrationState:
        assert instance_id == THREAD
        return self.instance


def finished_turn() -> OrchestrationState:
    """The thread after answering MESSAGE (user entry 1, reply 2): idle, and it stays so."""
    status = ThreadStatus(
        state="idle",
        turn=1,
        message_count=2,
        last_seq=2,
        updated_at="2026-12-03T06:00:00Z",
        agent="assistant",
        last_message_id=MESSAGE,
        last_turn={"id": MESSAGE, "seq": 1},
    )
    state = ThreadState(config=ThreadConfig(), initialized=True, turn=1, next_seq=3, message_count=2)
    now = datetime.now(UTC).replace(tzinfo=None)  # the client hands over naive UTC
    return OrchestrationState(
        instance_id=THREAD,
        name=THREAD_ORCHESTRATION,
        runtime_status=OrchestrationStatus.RUNNING,
        created_at=now,
        last_updated_at=now,
        serialized_input=json.dumps(state.to_dict()),
        serialized_output=None,
        serialized_custom_status=json.dumps(status.to_dict()),
        failure_details=None,
    )


USER = {"seq": 1, "id": MESSAGE, "role": "user", "content": "hello", "created_at": "2026-12-03T06:00:00Z"}
REPLY = {
    "seq": 2,
    "id": "r-1",
    "role": "assistant",
    "content": "hi",
    "reply_to": MESSAGE,
    "created_at": "2026-12-03T06:00:01Z",
}
PAGE = history.page_of(1)


@pytest.fixture
def long_polls_outlast_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "LONG_POLL_MS", 600_000)


async def _next_hold(backend: ScriptedBackend) -> list[str]:
    await backend.holding.wait()
    backend.holding.clear()
    return list(backend.waiting)


@pytest.mark.usefixtures("long_polls_outlast_the_test")
def test_a_queued_message_is_answered_when_its_record_lands_after_the_turn_finished() -> None:
    asyncio.run(_a_queued_message_is_answered_when_its_record_lands_after_the_turn_finished())


async def _a_queued_message_is_answered_when_its_record_lands_after_the_turn_finished() -> None:
    backend = ScriptedBackend(finished_turn())
    service = ThreadService(cast(AsyncTaskHubGrpcClient, backend))
    async with asyncio.timeout(30):
        waiter = asyncio.create_task(service.wait_for_reply(THREAD, MESSAGE, seconds=600))
        # No record yet: the waiter must hold on the message's record, not on the idle thread.
        assert await _next_hold(backend) == [_entity_id(MESSAGE_ENTITY, child_key(THREAD, MESSAGE))]
        record = storage_rules.message_put(None, {"id": MESSAGE, "seq": 1, "digest": "d", "entry": USER})
        await backend.put(MESSAGE_ENTITY, child_key(THREAD, MESSAGE), record)
        # Recorded, reply not stored: now the page the reply goes to.
        assert await _next_hold(backend) == [_entity_id(PAGE_ENTITY, child_key(THREAD, PAGE))]
        await backend.put(
            PAGE_ENTITY, child_key(THREAD, PAGE), history.page_append(None, PAGE, [USER, REPLY])
        )
        found = await waiter
    assert found["status"] == "answered"
    assert found["reply"]["content"] == "hi"
    assert not set(found) & set(threads.INTERNAL_KEYS)


@pytest.mark.usefixtures("long_polls_outlast_the_test")
def test_a_reply_stored_between_the_lookup_and_the_wait_is_not_waited_for() -> None:
    asyncio.run(_a_reply_stored_between_the_lookup_and_the_wait_is_not_waited_for())


async def _a_reply_stored_between_the_lookup_and_the_wait_is_not_waited_for() -> None:
    """The page gets the reply right after the waiter read it without: the waiter's own
    version of the page already has it, so a long-poll from there would never wake."""
    backend = ScriptedBackend(finished_turn())
    record = storage_rules.message_put(None, {"id": MESSAGE, "seq": 1, "digest": "d", "entry": USER})
    await backend.put(MESSAGE_ENTITY, child_key(THREAD, MESSAGE), record)
    page = child_key(THREAD, PAGE)
    backend.after_read[_entity_id(PAGE_ENTITY, page)] = (
        PAGE_ENTITY,
        page,
        history.page_append(None, PAGE, [USER, REPLY]),
    )
    service = ThreadService(cast(AsyncTaskHubGrpcClient, backend))
    async with asyncio.timeout(30):
        found = await service.wait_for_reply(THREAD, MESSAGE, seconds=600)
    assert found["status"] == "answered"
    assert not backend.after_read  # the write happened, after the lookup's read


def test_history_read_after_a_turn_is_done_waits_for_its_reply_to_be_written() -> None:
    asyncio.run(_history_read_after_a_turn_is_done_waits_for_its_reply_to_be_written())


async def _history_read_after_a_turn_is_done_waits_for_its_reply_to_be_written() -> None:
    """The thread reports idle (turn 1 counted, entries up to seq 2) before the one-way
    write of its page lands: a history read then holds for that write instead of
    returning the turn without its reply."""
    backend = ScriptedBackend(finished_turn())
    record = storage_rules.message_put(None, {"id": MESSAGE, "seq": 1, "digest": "d", "entry": USER})
    await backend.put(MESSAGE_ENTITY, child_key(THREAD, MESSAGE), record)
    service = ThreadService(cast(AsyncTaskHubGrpcClient, backend))
    async with asyncio.timeout(30):
        reader = asyncio.create_task(service.messages(THREAD, after=0, limit=50))
        assert await _next_hold(backend) == [_entity_id(PAGE_ENTITY, child_key(THREAD, PAGE))]
        await backend.put(
            PAGE_ENTITY, child_key(THREAD, PAGE), history.page_append(None, PAGE, [USER, REPLY])
        )
        page = await reader
    assert [e["seq"] for e in page["entries"]] == [1, 2]
    assert page["next_after"] is None


def test_a_reply_whose_blob_is_queued_but_not_written_is_waited_for() -> None:
    asyncio.run(_a_reply_whose_blob_is_queued_but_not_written_is_waited_for())


async def _a_reply_whose_blob_is_queued_but_not_written_is_waited_for() -> None:
    """A large reply is a stub on its page plus a blob. The page can be written first, and
    the blob's row can exist before its state (a hub creates it when the write is queued):
    the reply is then not readable yet, and the waiter waits for the blob's state."""
    backend = ScriptedBackend(finished_turn())
    record = storage_rules.message_put(None, {"id": MESSAGE, "seq": 1, "digest": "d", "entry": USER})
    await backend.put(MESSAGE_ENTITY, child_key(THREAD, MESSAGE), record)
    large = REPLY | {"content": "long " * 4000}
    blob = child_key(THREAD, 2)
    await backend.put(
        PAGE_ENTITY, child_key(THREAD, PAGE), history.page_append(None, PAGE, [USER, history.stub_for(large)])
    )
    await backend.put(BLOB_ENTITY, blob, None)
    service = ThreadService(cast(AsyncTaskHubGrpcClient, backend))
    async with asyncio.timeout(30):
        waiter = asyncio.create_task(service.wait_for_reply(THREAD, MESSAGE, seconds=600))
        assert await _next_hold(backend) == [_entity_id(BLOB_ENTITY, blob)]
        assert (await service.reply(THREAD, MESSAGE))["status"] == "answering"
        await backend.put(BLOB_ENTITY, blob, large)
        found = await waiter
    assert found["status"] == "answered"
    assert found["reply"]["content"] == large["content"]


class FakeTime:
    """A clock that moves only when the service sleeps; records each sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def backing_off(first: float, factor: float, most: float, total: float) -> list[float]:
    """The sleeps of a poll that starts at `first`, grows by `factor` up to `most`, for `total`."""
    sleeps: list[float] = []
    delay = first
    while sum(sleeps) < total - 1e-9:
        sleeps.append(min(delay, total - sum(sleeps)))
        delay = min(delay * factor, most)
    return sleeps


def test_where_long_polls_are_not_honoured_waits_poll_on_a_backing_off_schedule() -> None:
    asyncio.run(_where_long_polls_are_not_honoured_waits_poll_on_a_backing_off_schedule())


async def _where_long_polls_are_not_honoured_waits_poll_on_a_backing_off_schedule() -> None:
    settings = load_settings({"REPLY_POLL_INITIAL_MS": "10", "REPLY_POLL_MAX_MS": "100"})
    backend = ScriptedBackend(finished_turn(), ignores_hints=True)
    time_ = FakeTime()
    service = ThreadService(
        cast(AsyncTaskHubGrpcClient, backend), settings=settings, clock=time_.clock, sleep=time_.sleep
    )
    async with asyncio.timeout(30):
        found = await service.wait_for_reply(THREAD, MESSAGE, seconds=1.0)
    assert found["status"] == "queued"  # never recorded: the wait ends at its deadline
    assert time_.sleeps == pytest.approx(backing_off(0.01, 1.5, 0.1, 1.0))
    time_.sleeps.clear()
    status = ThreadStatus.from_dict(json.loads(finished_turn().serialized_custom_status or "{}"))
    assert status is not None
    async with asyncio.timeout(30):
        events, _ = await service.progress(THREAD, Cursor(2, status_version(status)), seconds=0.5)
    assert events == []
    assert time_.sleeps == pytest.approx(backing_off(0.01, 1.5, 0.1, 0.5))
    # without settings: the defaults, 20 ms growing to 500 ms
    time_.sleeps.clear()
    bare = ThreadService(cast(AsyncTaskHubGrpcClient, backend), clock=time_.clock, sleep=time_.sleep)
    async with asyncio.timeout(30):
        await bare.wait_for_reply(THREAD, MESSAGE, seconds=3.0)
    assert time_.sleeps == pytest.approx(backing_off(0.02, 1.5, 0.5, 3.0))


def test_history_waits_for_a_missing_page_on_a_backing_off_schedule_then_answers_what_it_has() -> None:
    asyncio.run(_history_waits_for_a_missing_page_on_a_backing_off_schedule())


async def _history_waits_for_a_missing_page_on_a_backing_off_schedule() -> None:
    backend = ScriptedBackend(finished_turn(), ignores_hints=True)  # its status counts 2 entries
    time_ = FakeTime()
    service = ThreadService(cast(AsyncTaskHubGrpcClient, backend), clock=time_.clock, sleep=time_.sleep)
    async with asyncio.timeout(30):
        page = await service.messages(THREAD, 0, 50)
    assert page == {"entries": [], "next_after": None}  # the page never came: what is stored
    assert time_.sleeps == pytest.approx(backing_off(0.01, 2, 0.2, threads.HISTORY_CATCH_UP_MS / 1000))
