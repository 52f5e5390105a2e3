"""Thread operations behind the HTTP API, over the Durable Functions client.

The routes in routes.py parse requests and shape responses; this module knows how a thread
maps onto Durable Task: the `thread` orchestration (instance id = thread id, its custom
status is the thread's summary) and the storage entities read through agent.store. Threads
written before paged storage are read from their legacy entity until they migrate. Backend
failures become `BackendUnavailableError` so callers get a 503 instead of a stack trace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from durabletask.client import (
    AsyncTaskHubGrpcClient,
    OrchestrationState,
    parse_orchestration_state,
)
from durabletask.entities import EntityInstanceId
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2

from agent import history, legacy_history
from agent.contract import (
    BLOB_ENTITY,
    CALLER_ENTITY,
    LEGACY_HISTORY_ENTITY,
    MAINTENANCE_INSTANCE_ID,
    MAINTENANCE_ORCHESTRATION,
    PAGE_ENTITY,
    THREAD_ENTITY,
    THREAD_ORCHESTRATION,
    USER_MESSAGE_EVENT,
    approval_event,
    child_key,
)
from agent.errors import ConflictError, NotFoundError
from agent.limits import MessageRateLimiter, caller_digest, check_threads, check_tokens
from agent.progress import Cursor, Event, events_since
from agent.settings import Settings
from agent.store import ThreadStore, delete_thread
from agent.thread import ThreadConfig, ThreadState, ThreadStatus, UserMessage, content_digest, utc_text
from http_api.shapes import (
    ACCEPTS_MESSAGES,
    Accepted,
    ThreadSummary,
    backend_errors,
    decode_token,
    encode_token,
    is_legacy,
    parse_json,
    reply_outcome,
    status_name,
    thread_config,
    thread_count,
    thread_owner,
    utc_now,
)

#: how long one long-poll read may block (devhost's hub honours it; others answer at once).
#: A waiter re-reads the thread after each one, so under load, when a turn takes seconds,
#: short polls would cost more than the turn itself.
LONG_POLL_MS = 10_000
#: how long a history read waits for entries a settled (idle or failed) thread has counted
#: but whose page write is still on the way, so a turn reported done is in the history
HISTORY_CATCH_UP_MS = 5_000
SETTLED_STATES = ("idle", "error")
# What a reply lookup carries for the waiter's next long-poll; never returned to a caller.
INTERNAL_KEYS = ("blob_seq", "after_seq", "next_seq", "instance_seen", "record_seen")


class ThreadService:
    """Thread operations for one caller. With a `principal` (authenticated callers), the
    caller sees and changes only the threads it created."""

    def __init__(
        self,
        client: AsyncTaskHubGrpcClient,
        principal: str | None = None,
        settings: Settings | None = None,
        caller: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._principal = principal
        self._settings = settings
        self._caller = caller_digest(caller) if caller else None
        self._store = ThreadStore(client)
        # the waits' clock and sleep (tests replace them to read the poll schedule)
        self._clock = clock
        self._sleep = sleep

    async def _until_counted(self, threads: int) -> None:
        """Wait (briefly) until the caller's thread count shows this thread, so the caller's
        next create sees it. Concurrent creates by one caller can still overshoot the limit."""
        for _ in range(100):  # at most about 2 s
            if thread_count(await self._usage()) >= threads:
                return
            await self._sleep(0.02)

    async def _usage(self) -> Any:
        if self._caller is None:
            return None
        async with backend_errors():
            return (await self._store.read(CALLER_ENTITY, self._caller)).state

    # -- reading ------------------------------------------------------------------------

    async def _instance(self, thread_id: str) -> OrchestrationState:
        async with backend_errors():
            state = await self._client.get_orchestration_state(thread_id, fetch_payloads=True)
        if state is None or state.name != THREAD_ORCHESTRATION or not self._owns(state):
            # Someone else's thread is reported exactly like a missing one.
            raise NotFoundError(f"Thread '{thread_id}' does not exist.")
        return state

    def _owns(self, state: OrchestrationState) -> bool:
        if self._principal is None:
            return True
        return thread_owner(state) == self._principal

    def _summary(self, instance: OrchestrationState, message_count: int | None = None) -> ThreadSummary:
        raw_input = parse_json(instance.serialized_input)
        custom = parse_json(instance.serialized_custom_status) or {}
        status = ThreadStatus.from_dict(custom)
        config = thread_config(raw_input)
        if status is not None:
            count = status.message_count
        elif ThreadState.is_current(raw_input):
            count = ThreadState.from_input(raw_input).message_count
        else:  # a thread written before paged storage, not migrated yet
            count = message_count if message_count is not None else 0
        # Without a status (a new generation has not published one yet, e.g. while a thread
        # from before paging migrates) the input's turn and the instance's time stand in.
        old_turn = raw_input.get("turn") if isinstance(raw_input, dict) else None
        return ThreadSummary(
            thread_id=instance.instance_id,
            agent=status.agent if status else config.agent,
            state=status.state if status else str(custom.get("state") or "idle"),
            turn=status.turn if status else int(custom.get("turn") or old_turn or 0),
            message_count=count,
            created_at=config.created_at,
            updated_at=(status.updated_at if status else custom.get("updated_at"))
            or _timestamp(instance.last_updated_at)
            or config.created_at,
            runtime_status=status_name(instance.runtime_status),
            metadata=config.metadata,
            generation=status.generation if status else 0,
            tools=status.tools if status else (),
            pending_approvals=status.pending_approvals if status else (),
        )

    async def _legacy(self, thread_id: str) -> legacy_history.HistoryState:
        async with backend_errors():
            read = await self._store.read(LEGACY_HISTORY_ENTITY, thread_id)
        return legacy_history.HistoryState.from_dict(read.state if isinstance(read.state, dict) else None)

    async def get(self, thread_id: str) -> ThreadSummary:
        instance = await self._instance(thread_id)
        if not is_legacy(instance):
            return self._summary(instance)
        entries = (await self._legacy(thread_id)).entries
        return self._summary(instance, sum(1 for e in entries if e["role"] != "system"))

    async def list_threads(self, limit: int, token: str | None) -> tuple[list[ThreadSummary], str | None]:
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
        threads = [self._summary(s) for s in states if s.name == THREAD_ORCHESTRATION and self._owns(s)]
        next_token = response.continuationToken.value if response.HasField("continuationToken") else ""
        return threads, encode_token(next_token) if next_token else None

    @staticmethod
    def _state_from_proto(proto: Any) -> OrchestrationState:
        parsed: OrchestrationState = parse_orchestration_state(proto)
        return parsed

    async def messages(self, thread_id: str, after: int, limit: int) -> dict[str, Any]:
        history.check_page_request(after, limit)
        instance = await self._instance(thread_id)
        raw_input = parse_json(instance.serialized_input)
        if is_legacy(instance):
            return legacy_history.page(await self._legacy(thread_id), after=after, limit=limit)
        status = ThreadStatus.from_dict(parse_json(instance.serialized_custom_status))
        last_seq = status.last_seq if status else ThreadState.from_input(raw_input).next_seq - 1
        deadline = self._clock() + HISTORY_CATCH_UP_MS / 1000
        async with backend_errors():
            while True:
                entries, cut = await self._store.entries(
                    thread_id, after=after, limit=limit, last_seq=last_seq
                )
                if not cut:
                    entries = await self._with_unwritten(thread_id, entries, status, after, after + limit)
                missing = int(entries[-1]["seq"]) + 1 if entries else after + 1
                if (
                    cut
                    or status is None
                    or status.state not in SETTLED_STATES
                    or missing > min(last_seq, after + limit)
                    or not await self._page_written(thread_id, missing, deadline)
                ):
                    break
        more = bool(entries) and (cut or int(entries[-1]["seq"]) < last_seq)
        return {"entries": entries, "next_after": entries[-1]["seq"] if more else None}

    async def _page_written(self, thread_id: str, seq: int, deadline: float) -> bool:
        """Wait (until `deadline`) for entry `seq` to reach its page: a settled thread has
        counted it, and its write, a one-way signal, is on the way. True once it is there."""
        key = child_key(thread_id, history.page_of(seq))
        delay = 0.01
        while True:
            page = await self._store.read(PAGE_ENTITY, key)
            if any(int(item["seq"]) >= seq for item in history.page_items(page.state)):
                return True
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            started = self._clock()
            changed = await self._store.read(
                PAGE_ENTITY, key, wait_ms=max(1, int(remaining * 1000)), seen=page.modified
            )
            if changed.modified == page.modified:  # a backend that ignores the hint
                await self._sleep(max(0.0, min(delay - (self._clock() - started), remaining)))
                delay = min(delay * 2, 0.2)

    async def _with_unwritten(
        self, thread_id: str, entries: list[dict[str, Any]], status: ThreadStatus | None, low: int, high: int
    ) -> list[dict[str, Any]]:
        """Add the user entry of a message being answered (or just answered) whose page is
        not written yet (it is written with the reply; meanwhile the message index has it).
        Only right after the stored entries, so a page never skips an entry."""
        if status is None:
            return entries
        for ref in (status.last_turn, status.answering):
            if not ref or not isinstance(ref.get("seq"), int) or not isinstance(ref.get("id"), str):
                continue
            seq = int(ref["seq"])
            following = int(entries[-1]["seq"]) + 1 if entries else low + 1
            if seq == following and seq <= high:
                record = await self._store.message(thread_id, str(ref["id"]))
                if (
                    record.exists
                    and isinstance(record.state, dict)
                    and isinstance(record.state.get("entry"), dict)
                ):
                    entries.append(record.state["entry"])
        return entries

    async def reply(self, thread_id: str, message_id: str, after_seq: int = 0) -> dict[str, Any]:
        """The message and its reply; status queued, answering, answered or failed. With
        `after_seq`, an older reply (a failure being retried) does not count yet."""
        found = await self._progress(thread_id, message_id, after_seq)
        for internal in INTERNAL_KEYS:
            found.pop(internal, None)
        return found

    async def _progress(self, thread_id: str, message_id: str, after_seq: int = 0) -> dict[str, Any]:
        instance = await self._instance(thread_id)
        found = await self._find(thread_id, message_id, instance) | {"instance_seen": _epoch(instance)}
        reply = found.get("reply")
        if after_seq and isinstance(reply, dict) and int(reply.get("seq") or 0) <= after_seq:
            found = {**found, "status": "answering", "reply": None}
        if isinstance(reply, dict) and history.is_stub(reply):
            # the reply's page is written but its blob not yet: it is not readable yet
            found = {**found, "status": "answering", "reply": None, "blob_seq": int(reply["seq"])}
        return {"thread_id": thread_id, "message_id": message_id, **found}

    async def _find(self, thread_id: str, message_id: str, instance: OrchestrationState) -> dict[str, Any]:
        if is_legacy(instance):
            message, reply = legacy_history.find_reply(await self._legacy(thread_id), message_id)
            return reply_outcome(message, reply)
        async with backend_errors():
            record = await self._store.message(thread_id, message_id)
            if not record.exists or not isinstance(record.state, dict):
                # The record is written once the thread has taken the message: its version
                # now is what a waiter waits to change (0 when there is no row yet).
                return reply_outcome(None, None) | {"record_seen": record.modified}
            message = record.state.get("entry")
            seq = int(record.state.get("seq") or 0)
            reply_seq = record.state.get("reply_seq")
            start = int(reply_seq) - 1 if isinstance(reply_seq, int) else seq
            # Only pages holding assigned entries: while a turn runs that is usually one.
            status = ThreadStatus.from_dict(parse_json(instance.serialized_custom_status))
            assigned = status.last_seq if status else start + 2 * history.PAGE_ENTRIES
            entries, cut = await self._store.entries(
                thread_id,
                after=start,
                limit=2 * history.PAGE_ENTRIES,
                last_seq=min(start + 2 * history.PAGE_ENTRIES, max(assigned, start + 1)),
            )
        outcome = reply_outcome(message, history.final_reply(entries, message_id))
        if not cut:
            # The next entry the thread writes after those read: where a waiter looks for it.
            outcome["next_seq"] = int(entries[-1]["seq"]) + 1 if entries else start + 1
        return outcome

    async def wait_for_reply(
        self, thread_id: str, message_id: str, seconds: float, after_seq: int = 0
    ) -> dict[str, Any]:
        """Poll for the reply until it is there or `seconds` pass. Each poll is a long-poll
        hint to the backend (devhost answers when the message's record or page changes);
        where the hint is ignored, polls back off from REPLY_POLL_INITIAL_MS to _MAX_MS."""
        settings = self._settings
        delay = (settings.reply_poll_initial_ms if settings else 20) / 1000
        max_delay = (settings.reply_poll_max_ms if settings else 500) / 1000
        deadline = self._clock() + seconds
        while True:
            found = await self._progress(thread_id, message_id, after_seq) | {"after_seq": after_seq}
            remaining = deadline - self._clock()
            if found["status"] in ("answered", "failed") or remaining <= 0:
                for internal in INTERNAL_KEYS:
                    found.pop(internal, None)
                return found
            started = self._clock()
            changed = await self._long_poll(thread_id, message_id, found, min(remaining, LONG_POLL_MS / 1000))
            if not changed:
                await self._sleep(max(0.0, min(delay - (self._clock() - started), deadline - self._clock())))
                delay = min(delay * 1.5, max_delay)

    async def _long_poll(
        self, thread_id: str, message_id: str, found: dict[str, Any], seconds: float
    ) -> bool:
        """Block on the entity that changes next; True when it did change."""
        wait_ms = max(1, int(seconds * 1000))
        async with backend_errors():
            if found.get("message") is None and "record_seen" in found:
                # queued: the next change is the message's record being written. Not the
                # thread's status: under load the thread may finish the turn before the
                # record is written, and then its status does not change again.
                seen = float(found["record_seen"])
                after = await self._store.message(thread_id, message_id, wait_ms=wait_ms, seen=seen)
                return abs(after.modified - seen) >= 1e-6  # both sides carry microseconds at most
            if found.get("message") is None:
                # queued on a legacy thread: the next change is the thread taking a message;
                # waiting from the version that was read misses nothing that came after it
                seen = float(found["instance_seen"])
                changed = await self._store.wait_instance(thread_id, seen=seen, wait_ms=wait_ms)
                return abs(changed - seen) >= 1e-6
            # Take the version of what changes next, then check it still lacks what is awaited:
            # what landed since the caller's read is seen here, what lands later wakes the wait.
            if "blob_seq" in found:
                before = await self._store.read(BLOB_ENTITY, child_key(thread_id, found["blob_seq"]))
                if before.exists and before.state is not None:
                    return True
                name, key = BLOB_ENTITY, child_key(thread_id, found["blob_seq"])
            else:
                # The page the thread writes next: after a round of tool calls the reply
                # may land on a later page than the one after the user entry.
                following = int(found.get("next_seq") or int(found["message"]["seq"]) + 1)
                name, key = PAGE_ENTITY, child_key(thread_id, history.page_of(following))
                before = await self._store.read(name, key)
                written = (int(item["seq"]) for item in history.page_items(before.state))
                if "next_seq" in found and any(seq >= following for seq in written):
                    return True
            after = await self._store.read(name, key, wait_ms=wait_ms, seen=before.modified)
            return after.modified != before.modified

    # -- changing -------------------------------------------------------------------------

    async def create(
        self,
        thread_id: str,
        metadata: dict[str, Any],
        settings: Settings,
        agent: str = "assistant",
        system_prompt: str | None = None,
    ) -> ThreadSummary:
        async with backend_errors():
            existing = await self._client.get_orchestration_state(thread_id, fetch_payloads=False)
        if existing is not None:
            raise ConflictError(f"Thread id '{thread_id}' is already in use; pick another id or omit it.")
        usage = await self._usage() if settings.limits.threads_per_principal else None
        if settings.limits.threads_per_principal:
            check_threads(usage, settings.limits.threads_per_principal)
        async with backend_errors():
            await self._store.delete(thread_id)  # leftovers of a thread purged elsewhere
            await self._ensure_maintenance()
        config = ThreadConfig(
            created_at=utc_now(),
            system_prompt=settings.system_prompt if system_prompt is None else system_prompt,
            agent=agent,
            context_window_bytes=settings.context_window_bytes,
            payload_cap_bytes=settings.payload_cap_bytes,
            metadata=metadata,
            owner=self._principal,
            max_tool_rounds=settings.max_tool_rounds,
            approval_timeout_seconds=settings.approval_timeout_seconds,
            caller=self._caller,
            count_tokens=settings.limits.tokens_per_day > 0,
        )
        async with backend_errors():
            await self._client.schedule_new_orchestration(
                THREAD_ORCHESTRATION, input=ThreadState(config=config).to_dict(), instance_id=thread_id
            )
            if self._caller is not None:
                await self._client.signal_entity(
                    EntityInstanceId(CALLER_ENTITY, self._caller), "thread_created"
                )
        if self._caller is not None and settings.limits.threads_per_principal:
            await self._until_counted(thread_count(usage) + 1)
        return ThreadSummary(
            thread_id=thread_id,
            agent=agent,
            state="idle",
            turn=0,
            message_count=0,
            created_at=config.created_at,
            updated_at=config.created_at,
            runtime_status="Running",
            metadata=metadata,
        )

    async def _ensure_maintenance(self) -> None:
        global _maintenance_checked
        if _maintenance_checked:
            return
        state = await self._client.get_orchestration_state(MAINTENANCE_INSTANCE_ID, fetch_payloads=False)
        if state is None or state.runtime_status not in ACCEPTS_MESSAGES:
            try:
                await self._client.schedule_new_orchestration(
                    MAINTENANCE_ORCHESTRATION, input={}, instance_id=MAINTENANCE_INSTANCE_ID
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
        _maintenance_checked = True

    async def post_message(self, thread_id: str, message: UserMessage) -> Accepted:
        """Queue a message. A known id with the same text is not queued again (unless its
        turn failed with a retryable error: then it is answered again); a known id with
        other text is a conflict."""
        instance = await self._instance(thread_id)
        if instance.runtime_status not in ACCEPTS_MESSAGES:
            raise ConflictError(
                f"Thread '{thread_id}' is {status_name(instance.runtime_status)} and takes no more messages."
            )
        if self._settings is not None and self._caller is not None:
            limits = self._settings.limits
            if limits.tokens_per_day:
                check_tokens(await self._usage(), limits.tokens_per_day, datetime.now(UTC))
            MESSAGES.admit(self._caller, limits.messages_per_minute)
        to_send = message
        if not is_legacy(instance):
            async with backend_errors():
                record = await self._store.message(thread_id, message.id)
            if record.exists and isinstance(record.state, dict):
                if record.state.get("digest") != content_digest(message.content):
                    raise ConflictError(
                        f"Message id '{message.id}' was already used for other content; "
                        "send new content with a new message_id."
                    )
                found = await self._find(thread_id, message.id, instance)
                reply = found.get("reply") or {}
                error = reply.get("error") if isinstance(reply, dict) else None
                if not (isinstance(error, dict) and error.get("retryable")):
                    return Accepted(message.id, duplicate=True)
                to_send = UserMessage(
                    id=message.id,
                    content=message.content,
                    sent_at=message.sent_at,
                    retry=True,
                    retry_seq=int(record.state["seq"]),
                    attempt=int(record.state.get("attempts") or 1) + 1,
                )
                async with backend_errors():
                    await self._client.raise_orchestration_event(
                        thread_id, USER_MESSAGE_EVENT, data=to_send.to_dict()
                    )
                return Accepted(message.id, duplicate=False, after_seq=int(reply.get("seq") or 0))
        async with backend_errors():
            await self._client.raise_orchestration_event(
                thread_id, USER_MESSAGE_EVENT, data=to_send.to_dict()
            )
        return Accepted(message.id, duplicate=False)

    async def delete(self, thread_id: str) -> None:
        """Terminate the thread, delete every stored piece, then purge the orchestration."""
        await self._instance(thread_id)
        async with backend_errors():
            await delete_thread(self._client, thread_id)

    async def decide(self, thread_id: str, call_id: str, approve: bool, reason: str | None) -> str:
        """Approve or deny a pending tool call: 404 for a call the thread never asked
        about, 409 for one already decided."""
        instance = await self._instance(thread_id)
        status = ThreadStatus.from_dict(parse_json(instance.serialized_custom_status))
        pending = next(
            (p for p in (status.pending_approvals if status else ()) if p.get("call_id") == call_id), None
        )
        if pending is not None and "decision" in pending:
            raise ConflictError(f"Tool call '{call_id}' was already {pending['decision']}.")
        if pending is None or instance.runtime_status not in ACCEPTS_MESSAGES:
            if await self._decided_earlier(thread_id, call_id, status):
                raise ConflictError(f"Tool call '{call_id}' was already decided.")
            raise NotFoundError(f"Thread '{thread_id}' has no tool call '{call_id}' waiting for approval.")
        decision = {"approve": approve, "reason": reason or ""}
        async with backend_errors():
            await self._client.raise_orchestration_event(thread_id, approval_event(call_id), data=decision)
        return "approved" if approve else "denied"

    async def _decided_earlier(self, thread_id: str, call_id: str, status: ThreadStatus | None) -> bool:
        """Whether a recent history entry holds this call's result (its approval is over)."""
        if status is None:
            return False
        after = max(0, status.last_seq - 2 * history.PAGE_ENTRIES)
        async with backend_errors():
            entries, _ = await self._store.entries(
                thread_id, after=after, limit=2 * history.PAGE_ENTRIES, last_seq=status.last_seq
            )
        return any(e.get("tool_call_id") == call_id for e in entries)

    async def notes(self, thread_id: str) -> list[dict[str, Any]]:
        await self._instance(thread_id)
        async with backend_errors():
            root = await self._store.read(THREAD_ENTITY, thread_id)
        state = root.state if isinstance(root.state, dict) else {}
        return [dict(n) for n in state.get("notes") or () if isinstance(n, dict)]

    async def progress(self, thread_id: str, cursor: Cursor, seconds: float) -> tuple[list[Event], Cursor]:
        """The thread's events after `cursor`, waiting up to `seconds` for the first one.
        Each check reads the instance and one page; between checks it long-polls the
        instance where the backend can (devhost), else sleeps the reply-poll interval."""
        settings = self._settings
        delay = (settings.reply_poll_initial_ms if settings else 20) / 1000
        max_delay = (settings.reply_poll_max_ms if settings else 500) / 1000
        deadline = self._clock() + seconds
        while True:
            instance = await self._instance(thread_id)
            status = ThreadStatus.from_dict(parse_json(instance.serialized_custom_status))
            page = await self.messages(thread_id, cursor.seq, history.PAGE_ENTRIES)
            events, after = events_since(cursor, status, page["entries"])
            remaining = deadline - self._clock()
            if events or remaining <= 0 or instance.runtime_status not in ACCEPTS_MESSAGES:
                return events, after
            seen = _epoch(instance)
            started = self._clock()
            async with backend_errors():
                changed = await self._store.wait_instance(
                    thread_id, seen=seen, wait_ms=max(1, int(min(remaining, LONG_POLL_MS / 1000) * 1000))
                )
            if changed == 0.0 or abs(changed - seen) < 1e-6:
                await self._sleep(max(0.0, min(delay - (self._clock() - started), remaining)))
                delay = min(delay * 1.5, max_delay)


_maintenance_checked = False
#: this process's per-caller message counts (agent.limits: a per-instance guard)
MESSAGES = MessageRateLimiter()


def _epoch(instance: OrchestrationState) -> float:
    """The instance's last update in epoch seconds, what a long-poll compares with (the
    client hands it over as a naive UTC datetime, which `.timestamp()` would read as local)."""
    return instance.last_updated_at.replace(tzinfo=UTC).timestamp()


def _timestamp(moment: datetime | None) -> str | None:
    """A naive UTC datetime from the client in the API's format; None for none (or the epoch,
    which a backend may report for a time it does not keep)."""
    if moment is None or moment.year <= 1970:
        return None
    return utc_text(moment)
