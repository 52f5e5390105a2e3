"""A full disk or read-only database mid-turn: the step rolls back, the work comes back, one log line.

A tiny filesystem is not available here, so "full" is SQLite's own size limit
(``PRAGMA max_page_count`` at the current size: SQLITE_FULL, as a full disk gives) and
"read-only" is ``PRAGMA query_only`` (SQLITE_READONLY), both on the hub's real connection.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb

from devhost.sqlite_hub import SqliteSidecar
from tests.sqlite_hub.protocol.raw import RawStream, complete_action, complete_activity, start

BIG = '"' + "y" * 300_000 + '"'  # needs far more pages than the database has free


def pragma(sidecar: SqliteSidecar, sql: str) -> Any:
    with sidecar.storage.read() as conn:
        return conn.execute(sql).fetchone()


def complete(stub: Any, item: Any, result: str = BIG) -> None:
    stub.CompleteOrchestratorTask(
        pb.OrchestratorResponse(
            instanceId=item.orchestratorRequest.instanceId,
            completionToken=item.completionToken,
            actions=[complete_action(result)],
        )
    )


def fault_lines(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and words in r.getMessage()]


def test_full_database_rolls_the_step_back_and_hands_it_out_again(
    stub: Any, sidecar: SqliteSidecar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devhost.sqlite_hub")
    start(stub, "full-1")
    stream = RawStream(stub)
    try:
        first = stream.next()
        pages = pragma(sidecar, "PRAGMA page_count")[0]
        pragma(sidecar, f"PRAGMA max_page_count = {pages}")
        attempt = first
        for tries in range(2):
            if tries:
                attempt = stream.next()  # the rolled-back step is handed out again
            assert attempt.orchestratorRequest.instanceId == "full-1"
            with pytest.raises(grpc.RpcError) as full:
                complete(stub, attempt)
            assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "disk is full" in str(full.value.details())
            # Nothing of the step was applied.
            state = stub.GetInstance(pb.GetInstanceRequest(instanceId="full-1")).orchestrationState
            assert state.orchestrationStatus == pb.ORCHESTRATION_STATUS_PENDING
            assert (
                list(stub.StreamInstanceHistory(pb.StreamInstanceHistoryRequest(instanceId="full-1"))) == []
            )
        lines = fault_lines(caplog, "disk is full")
        assert len(lines) == 1 and str(sidecar.db_path) in lines[0]  # one clear line, with the path
        pragma(sidecar, "PRAGMA max_page_count = 1073741823")
        again = stream.next()
        kinds = [e.WhichOneof("eventType") for e in again.orchestratorRequest.newEvents]
        assert kinds == ["orchestratorStarted", "executionStarted"]  # the same step, from the start
        complete(stub, again)
        with pytest.raises(grpc.RpcError) as stale:
            complete(stub, first)  # the rolled-back attempt's token is not current
        assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        stream.close()
    done = stub.GetInstance(pb.GetInstanceRequest(instanceId="full-1", getInputsAndOutputs=True))
    assert done.orchestrationState.orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert done.orchestrationState.output.value == BIG
    assert any("accepts writes again" in r.getMessage() for r in caplog.records)
    assert sidecar.integrity_check() == "ok"


def test_read_only_database_keeps_activity_results_for_redelivery(
    stub: Any, sidecar: SqliteSidecar, caplog: pytest.LogCaptureFixture
) -> None:
    start(stub, "ro-1")
    stream = RawStream(stub)
    try:
        step = stream.next()
        schedule = pb.OrchestratorAction(id=1, scheduleTask=pb.ScheduleTaskAction(name="act"))
        stub.CompleteOrchestratorTask(
            pb.OrchestratorResponse(
                instanceId="ro-1", completionToken=step.completionToken, actions=[schedule]
            )
        )
        activity = stream.next()
        pragma(sidecar, "PRAGMA query_only = ON")
        with pytest.raises(grpc.RpcError) as read_only:
            complete_activity(stub, activity, '"r"')
        assert read_only.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "read-only" in str(read_only.value.details())
        with pytest.raises(grpc.RpcError) as refused_start:
            start(stub, "ro-2")  # any write is refused the same way
        assert refused_start.value.code() == grpc.StatusCode.UNAVAILABLE
        assert len(fault_lines(caplog, "read-only")) == 1
        pragma(sidecar, "PRAGMA query_only = OFF")
        again = stream.next()
        assert again.activityRequest.taskId == 1  # the activity came back
        complete_activity(stub, again, '"r"')
        resumed = stream.next()
        assert resumed.orchestratorRequest.newEvents[-1].taskCompleted.result.value == '"r"'
    finally:
        stream.close()
