"""Several workers on one SQLite hub: every step is applied exactly once, nothing is lost."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from durabletask.client import OrchestrationStatus, TaskHubGrpcClient
from durabletask.worker import TaskHubGrpcWorker

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


def test_two_workers_share_the_work(hub: SqliteSidecar) -> None:
    workers: list[Any] = []
    for _ in range(2):
        worker: Any = TaskHubGrpcWorker(host_address=hub.address)
        wf.register(worker)
        worker.start()
        workers.append(worker)
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
