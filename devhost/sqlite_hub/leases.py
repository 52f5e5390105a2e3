"""Leases on work items handed to workers over ``GetWorkItems``.

Why this module exists: a work item handed to a worker must be completed at most once,
by the holder of its lease, and handed out again if the holder goes away. A lease is
identified by its ``completionToken``:

* a lease is granted when a work item is streamed to a worker and is tied to that
  stream; when the stream closes, all its leases are released at once so the work is
  handed out again immediately;
* a lease that is not completed within ``duration`` seconds expires and its work is
  handed out again;
* a completion whose token is not the current lease of its work item (stale, expired,
  released, from before a restart, or already used) is rejected by the servicer and
  never applied.

Leases live only in memory, guarded by the storage lock: they are meaningless after a
restart of the sidecar (no worker stream survives it), so a restart voids them all and
unfinished work is handed out again as soon as a worker connects.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

LeaseKind = Literal["orchestration", "activity", "entity"]

DEFAULT_LEASE_SECONDS = 300.0


@dataclass
class Lease:
    token: str
    kind: LeaseKind
    key: str
    stream_id: int
    expires: float
    # orchestration: inbox row ids taken by the step; entity: entity_inbox row ids.
    row_ids: list[int] = field(default_factory=list)
    # orchestration: the orchestratorStarted event prepended to this dispatch, if any.
    prefix: bytes | None = None
    execution_id: str = ""
    # orchestration: the partial (chunked) responses received so far for this step.
    chunks: list[Any] = field(default_factory=list)


class LeaseTable:
    """All live leases, by token and by (kind, key). Not thread-safe on its own."""

    def __init__(self, duration: float = DEFAULT_LEASE_SECONDS) -> None:
        self.duration = duration
        self._by_token: dict[str, Lease] = {}
        self._by_key: dict[tuple[LeaseKind, str], Lease] = {}
        self._stream_ids = itertools.count(1)

    def new_stream_id(self) -> int:
        return next(self._stream_ids)

    def grant(self, kind: LeaseKind, key: str, stream_id: int, now: float) -> Lease:
        if (kind, key) in self._by_key:
            raise RuntimeError(f"{kind} {key!r} is already leased")
        lease = Lease(
            token=f"{kind[0]}-{uuid.uuid4().hex}",
            kind=kind,
            key=key,
            stream_id=stream_id,
            expires=now + self.duration,
        )
        self._by_token[lease.token] = lease
        self._by_key[(kind, key)] = lease
        return lease

    def hold(self, kind: LeaseKind, key: str, now: float, seconds: float) -> None:
        """Keeps a work item from being handed out for a while (a lease no worker holds)."""
        self.grant(kind, key, 0, now).expires = now + seconds

    def get(self, token: str, kind: LeaseKind) -> Lease | None:
        lease = self._by_token.get(token)
        if lease is None or lease.kind != kind:
            return None
        return lease

    def held(self, kind: LeaseKind, key: str) -> Lease | None:
        return self._by_key.get((kind, key))

    def count(self, stream_id: int, kind: LeaseKind) -> int:
        return sum(
            1 for lease in self._by_token.values() if lease.stream_id == stream_id and lease.kind == kind
        )

    def keys(self, kind: LeaseKind) -> list[str]:
        return [key for (k, key) in self._by_key if k == kind]

    def release(self, lease: Lease) -> None:
        if self._by_token.get(lease.token) is lease:
            del self._by_token[lease.token]
            del self._by_key[(lease.kind, lease.key)]

    def drop_key(self, kind: LeaseKind, key: str) -> None:
        """Voids the lease on a work item whose underlying state was removed or replaced."""
        lease = self._by_key.get((kind, key))
        if lease is not None:
            self.release(lease)

    def release_stream(self, stream_id: int) -> int:
        gone = [lease for lease in self._by_token.values() if lease.stream_id == stream_id]
        for lease in gone:
            self.release(lease)
        return len(gone)

    def expire(self, now: float) -> int:
        gone = [lease for lease in self._by_token.values() if lease.expires <= now]
        for lease in gone:
            self.release(lease)
        return len(gone)

    def next_expiry(self) -> float | None:
        return min((lease.expires for lease in self._by_token.values()), default=None)

    def clear(self) -> None:
        self._by_token.clear()
        self._by_key.clear()

    def __len__(self) -> int:
        return len(self._by_token)
