"""The maintenance sweep: delete orphaned thread storage and threads idle past retention.

A thread's storage outlives its orchestration when the orchestration is purged by other
means than `DELETE /api/threads/{id}` (the management API, the Durable Task Scheduler
dashboard); a thread idle for longer than THREAD_RETENTION_DAYS is deleted completely. The
`maintenance` orchestration runs `sweep` as an activity every MAINTENANCE_INTERVAL_SECONDS.
Its result holds counts only, never thread ids, so no trace of a deleted thread is left in
the maintenance orchestration's own history.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from durabletask.client import AsyncTaskHubGrpcClient

from agent.contract import LEGACY_HISTORY_ENTITY, THREAD_ORCHESTRATION
from agent.settings import Settings
from agent.store import ThreadStore, delete_thread
from agent.thread import ThreadStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    orphans_deleted: int
    expired_deleted: int
    next_sweep_seconds: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        return None


async def sweep(client: AsyncTaskHubGrpcClient, settings: Settings, now: datetime) -> SweepResult:
    """One pass over every thread root (and legacy history) in the task hub."""
    store = ThreadStore(client)
    orphans = expired = 0
    retention = (
        timedelta(days=settings.thread_retention_days) if settings.thread_retention_days is not None else None
    )
    thread_ids = {*await store.roots(), *await store.roots(LEGACY_HISTORY_ENTITY)}
    for thread_id in sorted(thread_ids):
        state = await client.get_orchestration_state(thread_id, fetch_payloads=False)
        if state is None or state.name != THREAD_ORCHESTRATION:
            await store.delete(thread_id)
            orphans += 1
            continue
        if retention is None:
            continue
        status = ThreadStatus.from_dict(_custom_status(state.serialized_custom_status))
        last = _parse_time(status.updated_at if status else None) or state.last_updated_at.replace(
            tzinfo=None
        )
        if now.replace(tzinfo=None) - last > retention:
            await delete_thread(client, thread_id)
            expired += 1
    if orphans or expired:
        log.info("maintenance: deleted %d orphaned and %d expired threads", orphans, expired)
    return SweepResult(orphans, expired, settings.maintenance_interval_seconds)


def _custom_status(raw: str | None) -> object:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
