"""One SQLite transaction per state transition, none for handing out work or reading.

Counted by SQLite's own statement trace (``TransactionAudit``): every COMMIT, plus any
write outside an explicit transaction (which would commit on its own and must not exist).
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from durabletask.client import OrchestrationStatus, TaskHubGrpcClient
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.worker import TaskHubGrpcWorker
from google.protobuf import timestamp_pb2, wrappers_pb2

from devhost.sqlite_hub import SqliteSidecar
from devhost.sqlite_hub.storage import TransactionAudit
from tests.sqlite_hub import workflows as wf
from tests.sqlite_hub.protocol.raw import RawStream, complete_action, complete_activity, start


@pytest.fixture
def audited(tmp_path: pathlib.Path) -> Iterator[SqliteSidecar]:
    hub = SqliteSidecar(tmp_path / "taskhub.db")
    hub.storage.audit_transactions = True
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def raw(audited: SqliteSidecar) -> Iterator[Any]:
    with grpc.insecure_channel(audited.address) as channel:
        yield stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]


class Commits:
    """How many transactions SQLite committed since the last call."""

    def __init__(self, audit: TransactionAudit) -> None:
        self.audit = audit
        self.seen = audit.commits

    def since(self) -> int:
        now = self.audit.commits
        delta, self.seen = now - self.seen, now
        return delta


def schedule(task_id: int, name: str = "act") -> Any:
    return pb.OrchestratorAction(
        id=task_id,
        scheduleTask=pb.ScheduleTaskAction(name=name, input=wrappers_pb2.StringValue(value=str(task_id))),
    )


def later(task_id: int) -> Any:
    """A timer that never fires during the test."""
    return pb.OrchestratorAction(
        id=task_id, createTimer=pb.CreateTimerAction(fireAt=timestamp_pb2.Timestamp(seconds=4_000_000_000))
    )


def test_each_transition_is_one_commit_and_handing_out_work_is_none(raw: Any, audited: SqliteSidecar) -> None:
    audit = audited.storage.audit
    commits = Commits(audit)
    storage_base, audit_base = audited.storage.commits, audit.commits
    start(raw, "c-1")
    assert commits.since() == 1
    stream = RawStream(raw)
    try:
        step = stream.next()  # handed out: no commit
        assert raw.GetInstance(pb.GetInstanceRequest(instanceId="c-1")).exists
        assert commits.since() == 0
        # One step with three activities and a timer: one commit.
        raw.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="c-1",
                completionToken=step.completionToken,
                actions=[schedule(1), schedule(2), schedule(3), later(4)],
            )
        )
        assert commits.since() == 1
        activities = [stream.next() for _ in range(3)]
        assert commits.since() == 0
        for item in activities:
            complete_activity(raw, item, "1")
            assert commits.since() == 1
        # The next step, sent in two chunks: the partial chunk commits nothing.
        step = stream.next()
        assert commits.since() == 0
        raw.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="c-1", completionToken=step.completionToken, actions=[later(5)], isPartial=True
            )
        )
        assert commits.since() == 0
        raw.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="c-1",
                completionToken=step.completionToken,
                actions=[complete_action()],
                chunkIndex=wrappers_pb2.Int32Value(value=1),
            )
        )
        assert commits.since() == 1
        # An entity: signal (one), batch handed out (none), batch completed (one).
        raw.SignalEntity(pb.SignalEntityRequest(instanceId="@ctr@c", name="add", requestId="r"))
        assert commits.since() == 1
        batch = stream.next()
        raw.GetEntity(pb.GetEntityRequest(instanceId="@ctr@c", includeState=True))
        raw.QueryEntities(pb.QueryEntitiesRequest(query=pb.EntityQuery()))
        raw.QueryInstances(pb.QueryInstancesRequest(query=pb.InstanceQuery()))
        assert commits.since() == 0
        raw.CompleteEntityTask(
            pb.EntityBatchResult(
                completionToken=batch.completionToken,
                results=[pb.OperationResult(success=pb.OperationResultSuccess())],
                entityState=wrappers_pb2.StringValue(value="1"),
            )
        )
        assert commits.since() == 1
    finally:
        stream.close()
    assert raw.GetInstance(
        pb.GetInstanceRequest(instanceId="c-1")
    ).orchestrationState.orchestrationStatus == (pb.ORCHESTRATION_STATUS_COMPLETED)
    assert audit.implicit_writes == []
    # The hub's own counter (write() blocks) agrees with SQLite's count.
    assert audited.storage.commits - storage_base == audit.commits - audit_base


def test_an_sdk_orchestration_costs_one_commit_per_step_and_per_activity(audited: SqliteSidecar) -> None:
    worker: Any = TaskHubGrpcWorker(host_address=audited.address)
    wf.register(worker)
    worker.start()
    client = TaskHubGrpcClient(host_address=audited.address)
    assert audited.hub is not None
    try:
        commits = Commits(audited.storage.audit)
        steps_before = audited.hub.steps_applied
        iid = client.schedule_new_orchestration(wf.seq_orch, input=4, instance_id="sdk-1")
        state = client.wait_for_orchestration_completion(iid, timeout=60)
        assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
        steps = audited.hub.steps_applied - steps_before
        assert steps == 5  # one step per activity result, plus the first
        # start + one per step + one per activity result; nothing for dispatch or waiting
        assert commits.since() == 1 + steps + 4
    finally:
        worker.stop()
        client.close()
    assert audited.storage.audit.implicit_writes == []
