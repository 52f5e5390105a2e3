"""Several workers on one SQLite hub: every step is applied exactly once, nothing is lost."""

from __future__ import annotations

import json
import pathlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
from durabletask import task
from durabletask.client import OrchestrationStatus, TaskHubGrpcClient
from durabletask.worker import ConcurrencyOptions, TaskHubGrpcWorker

from devhost.sqlite_hub import SqliteSidecar
from tests.sqlite_hub import workflows as wf


@pytest.fixture
def hub(tmp_path: pathlib.Path) -> Iterator[SqliteSidecar]:
    sidecar = SqliteSidecar(tmp_path / "taskhub.db", durability="full")
    sidecar.start()
    try:
        yield sidecar
    finally:
        sidecar.stop()


Gen = Generator[Any, Any, Any]


def recording_worker(address: str, index: int, calls: Counter[tuple[int, str]]) -> Any:
    """A worker whose functions behave like the shared workflows but record who ran them.

    Both workers register the same names; each records (worker index, function name) for
    every activity it runs and every orchestration step it takes.
    """
    lock = threading.Lock()

    def record(name: str) -> None:
        with lock:
            calls[(index, name)] += 1

    def double(ctx: task.ActivityContext, x: int) -> int:
        record("double")
        return wf.double(ctx, x)

    def wrap(fn: Callable[[task.OrchestrationContext, Any], Gen]) -> Any:
        def orchestrator(ctx: task.OrchestrationContext, value: Any) -> Gen:
            if not ctx.is_replaying:
                record(fn.__name__)
            return (yield from fn(ctx, value))

        orchestrator.__name__ = fn.__name__
        return orchestrator

    # At most 4 activities at once per worker: the hub's flow control spreads the rest.
    worker: Any = TaskHubGrpcWorker(
        host_address=address,
        concurrency_options=ConcurrencyOptions(maximum_concurrent_activity_work_items=4),
    )
    worker.add_activity(double)
    for fn in (wf.fan_orch, wf.seq_orch, wf.parent_orch, wf.child_orch):
        worker.add_orchestrator(wrap(fn))
    return worker


def test_two_workers_share_the_work(hub: SqliteSidecar) -> None:
    calls: Counter[tuple[int, str]] = Counter()
    workers = [recording_worker(hub.address, i, calls) for i in range(2)]
    for worker in workers:
        worker.start()
    assert hub.hub is not None
    deadline = time.monotonic() + 30
    while len(hub.hub._streams) < 2:  # both are connected before any work exists
        assert time.monotonic() < deadline, "workers never connected"
        time.sleep(0.01)
    client = TaskHubGrpcClient(host_address=hub.address)
    try:
        fans = [
            client.schedule_new_orchestration(wf.fan_orch, input=6, instance_id=f"fan-{i}") for i in range(10)
        ]
        seqs = [
            client.schedule_new_orchestration(wf.seq_orch, input=3, instance_id=f"seq-{i}") for i in range(10)
        ]
        subs = [
            client.schedule_new_orchestration(wf.parent_orch, input=i, instance_id=f"sub-{i}")
            for i in range(5)
        ]
        for iid in fans:
            state = client.wait_for_orchestration_completion(iid, timeout=60)
            assert state is not None and json.loads(state.serialized_output or "") == 30
        for iid in seqs:
            state = client.wait_for_orchestration_completion(iid, timeout=60)
            assert state is not None and json.loads(state.serialized_output or "") == [0, 2, 4]
        for i, iid in enumerate(subs):
            state = client.wait_for_orchestration_completion(iid, timeout=60)
            assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
            assert json.loads(state.serialized_output or "") == 2 * i + 1
        for iid in [*fans, *seqs]:
            kinds = [type(e).__name__ for e in client.get_orchestration_history(iid)]
            assert kinds.count("ExecutionCompletedEvent") == 1
            assert kinds.count("TaskScheduledEvent") == kinds.count("TaskCompletedEvent")
            assert kinds.count("OrchestratorStartedEvent") == kinds.count("OrchestratorCompletedEvent")
        assert hub.integrity_check() == "ok"
    finally:
        for worker in workers:
            worker.stop()
        client.close()
    # Every activity ran exactly once in all (10 fans x 6, 10 sequences x 3, 5 children x 1)...
    assert calls[(0, "double")] + calls[(1, "double")] == 60 + 30 + 5
    # ...and both workers did a real share of the activities and of the orchestration steps.
    for index in (0, 1):
        assert calls[(index, "double")] > 0, calls
        assert sum(n for (i, name), n in calls.items() if i == index and name != "double") > 0, calls
