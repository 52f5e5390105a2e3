"""The task hub core: storage + leases + wake-ups, with one method per state transition.

Why this module exists: it is the seam between the gRPC servicer (protocol plumbing,
error codes, streaming) and the domain modules (pure functions over one transaction).
Every public method here is one state transition, applied in ONE ``Storage.write()``
transaction, followed by a wake-up of waiting streams and waiters. Lease checks and
lease bookkeeping happen under the storage lock in the same critical section as the
transaction, so a completion is applied at most once and never for a stale lease.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from durabletask.internal import orchestrator_service_pb2 as pb

from devhost.sqlite_hub import dispatch, entities, instances, steps, timers
from devhost.sqlite_hub import events as ev
from devhost.sqlite_hub.faults import STORAGE_RETRY_SECONDS, StorageUnavailable
from devhost.sqlite_hub.leases import DEFAULT_LEASE_SECONDS, Lease, LeaseKind, LeaseTable
from devhost.sqlite_hub.longpoll import LongPoll
from devhost.sqlite_hub.storage import Storage
from devhost.sqlite_hub.tx import Tx, log

T = TypeVar("T")

# An idle GetWorkItems stream gets a healthPing this often. The reference sends none, so
# an idle Python worker gives up on its stream after 120 s of silence and reconnects;
# Durable Task Scheduler pings idle streams, and so does this hub.
HEALTH_PING_SECONDS = 30.0
# An abandoned work item is handed out again after this pause, so a worker that keeps
# rejecting it (e.g. a version it will not run) does not spin. The reference re-queues
# at once; Durable Task Scheduler also delays redelivery of abandoned work items.
ABANDON_BACKOFF_SECONDS = 0.5


class StaleLease(Exception):
    """A completion arrived for a lease that is not current (stale, unknown or used)."""


class BadChunk(Exception):
    """A chunked orchestrator response arrived out of order."""


@dataclass
class Stream:
    info: dispatch.StreamInfo
    closed: bool = False


class TaskHub:
    def __init__(
        self, storage: Storage, *, lease_seconds: float = DEFAULT_LEASE_SECONDS, max_history: int = 10_000
    ) -> None:
        self.storage = storage
        self.leases = LeaseTable(lease_seconds)
        self.health_ping_seconds = HEALTH_PING_SECONDS
        self.signals = timers.Signals()
        self.long_poll = LongPoll()
        self.max_history = max_history
        self._streams: dict[int, Stream] = {}
        self.steps_applied = 0  # orchestration steps committed (for the benchmark)

    # -- transactions --------------------------------------------------------------------

    def write(self, fn: Callable[[Tx], T]) -> T:
        """Runs ``fn`` as one transaction, then wakes streams and waiters."""
        with self.storage.write() as conn:
            result = fn(Tx(conn=conn, now=ev.now(), leases=self.leases, max_history=self.max_history))
        with self.storage.read() as conn:
            self.long_poll.after_commit(conn)  # wakes only long-polls whose row changed
        self.signals.notify()
        return result

    def read(self, fn: Callable[[Any], T]) -> T:
        with self.storage.read() as conn:
            return fn(conn)

    # -- work-item streams ---------------------------------------------------------------

    def open_stream(self, request: Any) -> Stream:
        with self.storage.lock:
            stream = Stream(dispatch.stream_info(self.leases.new_stream_id(), request))
            self._streams[stream.info.stream_id] = stream
            return stream

    def close_stream(self, stream: Stream) -> None:
        """Releases everything leased to a closed stream so it is handed out again now."""
        with self.storage.lock:
            if stream.closed:
                return
            stream.closed = True
            self._streams.pop(stream.info.stream_id, None)
            released = self.leases.release_stream(stream.info.stream_id)
        if released:
            log.info("worker stream %d closed; %d work item(s) released", stream.info.stream_id, released)
        self.signals.notify(state=False)

    def take(self, stream: Stream) -> tuple[Any, float | None]:
        """The next work item for a stream, or (None, when to look again)."""
        with self.storage.read() as conn:
            if stream.closed:
                return None, None
            now = ev.now()
            item = dispatch.take(conn, self.leases, stream.info, now)
            if item is not None:
                return item, None
            wake = timers.next_due(conn, now)
            expiry = self.leases.next_expiry()
            if expiry is not None and (wake is None or expiry < wake):
                wake = expiry
            return None, wake

    # -- completions ---------------------------------------------------------------------

    def _lease(self, token: str, kind: LeaseKind, key: str | None = None) -> Lease:
        lease = self.leases.get(token, kind)
        if lease is None or (key is not None and lease.key != key):
            raise StaleLease(f"no current {kind} lease for completion token '{token}'")
        if lease.expires <= ev.now():
            self.leases.release(lease)
            raise StaleLease(f"the {kind} lease '{token}' has expired")
        return lease

    def complete_orchestration(self, response: Any) -> None:
        """Applies a step; chunked responses (``isPartial``) are collected until the last chunk."""
        with self.storage.lock:
            lease = self._lease(response.completionToken, "orchestration", response.instanceId)
            index = response.chunkIndex.value if response.HasField("chunkIndex") else len(lease.chunks)
            if index != len(lease.chunks):
                raise BadChunk(f"expected chunk {len(lease.chunks)} of '{lease.key}', got {index}")
            if response.isPartial:
                lease.chunks.append(response)
                return
            if lease.chunks:
                merged = pb.OrchestratorResponse()
                merged.CopyFrom(response)
                del merged.actions[:]
                for chunk in [*lease.chunks, response]:
                    merged.actions.extend(chunk.actions)
                response = merged
            try:
                self.write(lambda tx: self._apply_step(tx, lease, response))
                self.steps_applied += 1
            except StorageUnavailable:
                self._retry_later(lease)
                raise
            except steps.HistoryTooLarge as exc:
                message = str(exc)
                # The reference leaves such an instance stuck; failing it (as Azure Durable
                # Task Scheduler fails oversized orchestrations) avoids a redelivery loop.
                self.write(lambda tx: _fail(tx, response.instanceId, message))
                raise
            finally:
                self.leases.release(lease)

    def _apply_step(self, tx: Tx, lease: Lease, response: Any) -> None:
        row = instances.get(tx.conn, lease.key)
        if row is None or row["execution_id"] != lease.execution_id:
            raise StaleLease(f"instance '{lease.key}' changed while its step was in flight")
        steps.apply(tx, row, lease, response)

    def complete_activity(self, response: Any) -> None:
        with self.storage.lock:
            lease = self._lease(response.completionToken, "activity")
            try:
                self.write(lambda tx: _apply_activity(tx, lease, response))
            except StorageUnavailable:
                self._retry_later(lease)
                raise
            finally:
                self.leases.release(lease)

    def complete_entity(self, result: Any) -> None:
        with self.storage.lock:
            lease = self._lease(result.completionToken, "entity")
            try:
                self.write(lambda tx: entities.apply_batch_result(tx, lease.key, lease.row_ids, result))
            except StorageUnavailable:
                self._retry_later(lease)
                raise
            finally:
                self.leases.release(lease)

    def _retry_later(self, lease: Lease) -> None:
        """The completion could not be stored (disk full, read-only): the work item is
        handed out again after a pause, so the worker redoes it once storage recovers."""
        self.leases.release(lease)
        self.leases.hold(lease.kind, lease.key, ev.now(), STORAGE_RETRY_SECONDS)
        self.signals.notify(state=False)

    def abandon(self, token: str, kind: LeaseKind) -> None:
        """Gives a work item back so it is handed out again (unknown tokens are ignored)."""
        with self.storage.lock:
            lease = self.leases.get(token, kind)
            if lease is not None and lease.stream_id != 0:
                self.leases.release(lease)
                self.leases.hold(kind, lease.key, ev.now(), ABANDON_BACKOFF_SECONDS)
        self.signals.notify(state=False)

    # -- waiting -------------------------------------------------------------------------

    def wait_for(
        self, instance_id: str, predicate: Callable[[Any], bool], timeout: float
    ) -> tuple[Any, bool]:
        """Waits until the instance satisfies ``predicate``; returns (row or None, satisfied)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.signals.state_gen
            row = self.read(lambda conn: instances.get(conn, instance_id))
            if row is not None and predicate(row):
                return row, True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.signals.closed:
                return row, False
            self.signals.wait_state(seen, remaining)


def _apply_activity(tx: Tx, lease: Lease, response: Any) -> None:
    cur = tx.conn.execute("DELETE FROM activities WHERE id = ?", (int(lease.key),))
    if cur.rowcount == 0:
        return
    if response.HasField("failureDetails"):
        event = pb.HistoryEvent(
            eventId=-1,
            taskFailed=pb.TaskFailedEvent(
                taskScheduledId=response.taskId, failureDetails=response.failureDetails
            ),
        )
    else:
        event = pb.HistoryEvent(
            eventId=-1,
            taskCompleted=pb.TaskCompletedEvent(
                taskScheduledId=response.taskId,
                result=response.result if response.HasField("result") else None,
            ),
        )
    instances.deliver(tx, response.instanceId, event, execution_id=lease.execution_id)


def _fail(tx: Tx, instance_id: str, message: str) -> None:
    details = pb.TaskFailureDetails(errorType="HistoryTooLarge", errorMessage=message, isNonRetriable=True)
    tx.conn.execute(
        "UPDATE instances SET status = ?, failure = ?, completed_at = ?, last_updated_at = ?"
        " WHERE instance_id = ?",
        (ev.FAILED, ev.encode(details), tx.now, tx.now, instance_id),
    )
    tx.conn.execute("DELETE FROM inbox WHERE instance_id = ?", (instance_id,))
