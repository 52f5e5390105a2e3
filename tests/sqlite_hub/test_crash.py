"""Crash/restart tests: the CLI sidecar in a real process, SIGKILLed mid-flight and restarted.

The worker runs in the test process with fast reconnects; the sidecar process is killed
with SIGKILL (no chance to flush or clean up) several times while orchestrations with
activities and durable timers are in flight, and restarted on the same database file.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from durabletask import task
from durabletask.client import OrchestrationStatus, TaskHubGrpcClient
from durabletask.entities import EntityInstanceId
from durabletask.entities.entity_context import EntityContext
from durabletask.grpc_options import GrpcWorkerResiliencyOptions
from durabletask.worker import TaskHubGrpcWorker

from tests.sqlite_hub.conftest import free_port

REPO = pathlib.Path(__file__).resolve().parents[2]

_calls_lock = threading.Lock()
_activity_calls: list[tuple[float, int]] = []


def slow_double(ctx: task.ActivityContext, x: int) -> int:
    with _calls_lock:
        _activity_calls.append((time.monotonic(), x))
    time.sleep(0.1)
    return x * 2


def crash_orch(ctx: task.OrchestrationContext, n: int) -> Any:
    total = 0
    for i in range(3):
        total += yield ctx.call_activity(slow_double, input=n * 10 + i)
        yield ctx.create_timer(timedelta(seconds=0.3))
    return total


_entity_calls = 0  # operations the worker has executed (re-executions included)


def slow_counter(ctx: EntityContext, value: Any) -> int:
    global _entity_calls
    with _calls_lock:
        _entity_calls += 1
    time.sleep(0.02)
    state = ctx.get_state(int, 0) + int(value)
    ctx.set_state(state)
    return state


def entity_calls() -> int:
    with _calls_lock:
        return _entity_calls


def reset_entity_calls() -> None:
    global _entity_calls
    with _calls_lock:
        _entity_calls = 0


def wait_until(check: Callable[[], bool], message: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, message
        time.sleep(0.005)


def long_timer_orch(ctx: task.OrchestrationContext, seconds: float) -> Any:
    fire_at = ctx.current_utc_datetime + timedelta(seconds=seconds)
    yield ctx.create_timer(fire_at)
    return fire_at.timestamp()


class SidecarProcess:
    def __init__(self, db: pathlib.Path, port: int) -> None:
        self.db = db
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devhost.sqlite_hub",
                "--db",
                str(self.db),
                "--port",
                str(self.port),
                "--log-level",
                "WARNING",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("LISTENING"), line
        assert line.strip().endswith(f":{self.port}")
        self.started_at = time.monotonic()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.close_pipe()

    def terminate(self, signum: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=15)
        self.close_pipe()
        return code

    def close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def sidecar_proc(tmp_path: pathlib.Path) -> Iterator[SidecarProcess]:
    proc = SidecarProcess(tmp_path / "data" / "taskhub.db", free_port())
    proc.start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(timeout=10)
        proc.close_pipe()


def make_worker(address: str) -> Any:
    worker: Any = TaskHubGrpcWorker(
        host_address=address,
        resiliency_options=GrpcWorkerResiliencyOptions(
            reconnect_backoff_base_seconds=0.05, reconnect_backoff_cap_seconds=0.2
        ),
    )
    worker.add_orchestrator(crash_orch)
    worker.add_orchestrator(long_timer_orch)
    worker.add_activity(slow_double)
    worker.add_entity(slow_counter)
    return worker


def retrying(fn: Callable[[], Any], timeout: float = 60) -> Any:
    """Calls ``fn`` until it stops failing with UNAVAILABLE (the sidecar is restarting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_shut_down_cleanly(sidecar_proc: SidecarProcess, signum: int) -> None:
    assert sidecar_proc.terminate(signum) == 0
    assert sidecar_proc.db.exists()


@pytest.mark.slow
def test_repeated_sigkill_every_orchestration_completes_exactly_once(sidecar_proc: SidecarProcess) -> None:
    address = f"127.0.0.1:{sidecar_proc.port}"
    worker = make_worker(address)
    worker.start()
    client = TaskHubGrpcClient(host_address=address)
    try:
        ids = [
            client.schedule_new_orchestration(crash_orch, input=n, instance_id=f"crash-{n}") for n in range(8)
        ]
        rng = random.Random(7)
        for _ in range(4):
            time.sleep(rng.uniform(0.3, 0.8))
            sidecar_proc.kill()
            time.sleep(rng.uniform(0.0, 0.3))
            sidecar_proc.start()
        for n, iid in enumerate(ids):
            state = retrying(functools.partial(client.wait_for_orchestration_completion, iid, timeout=60))
            assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED, state
            assert json.loads(state.serialized_output or "") == sum(2 * (n * 10 + i) for i in range(3))
            history = retrying(functools.partial(client.get_orchestration_history, iid))
            kinds = [type(e).__name__ for e in history]
            assert kinds.count("ExecutionCompletedEvent") == 1
            assert kinds.count("TaskScheduledEvent") == 3
            assert kinds.count("TaskCompletedEvent") == 3
            assert kinds.count("TimerCreatedEvent") == 3
            assert kinds.count("TimerFiredEvent") == 3
    finally:
        worker.stop()
        client.close()


@pytest.mark.slow
def test_durable_timer_fires_after_restart_on_time(sidecar_proc: SidecarProcess) -> None:
    address = f"127.0.0.1:{sidecar_proc.port}"
    worker = make_worker(address)
    worker.start()
    client = TaskHubGrpcClient(host_address=address)
    try:
        iid = client.schedule_new_orchestration(long_timer_orch, input=3.0, instance_id="timer-1")
        deadline = time.monotonic() + 30
        while not any(type(e).__name__ == "TimerCreatedEvent" for e in client.get_orchestration_history(iid)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sidecar_proc.kill()
        time.sleep(1.0)
        sidecar_proc.start()
        state = retrying(functools.partial(client.wait_for_orchestration_completion, iid, timeout=30))
        finished = time.time()
        assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
        fire_at = json.loads(state.serialized_output or "")
        assert finished >= fire_at
        # On time means woken by the timer itself, not by the next health ping (30 s) or
        # lease expiry (300 s); 10 s leaves room for a loaded machine.
        assert finished - fire_at < 10.0, f"timer fired {finished - fire_at:.2f}s late"
    finally:
        worker.stop()
        client.close()


@pytest.mark.slow
def test_unfinished_work_resumes_promptly_after_restart(sidecar_proc: SidecarProcess) -> None:
    address = f"127.0.0.1:{sidecar_proc.port}"
    client = TaskHubGrpcClient(host_address=address)
    worker = make_worker(address)
    try:
        # Queue work with no worker connected, then crash the sidecar.
        ids = [
            client.schedule_new_orchestration(crash_orch, input=100 + n, instance_id=f"resume-{n}")
            for n in range(4)
        ]
        sidecar_proc.kill()
        worker.start()  # keeps retrying until the sidecar is back
        with _calls_lock:
            _activity_calls.clear()
        sidecar_proc.start()
        restarted = sidecar_proc.started_at
        deadline = time.monotonic() + 30
        while True:
            with _calls_lock:
                first = min((t for t, x in _activity_calls if x >= 1000), default=None)
            if first is not None:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        resumed_after = first - restarted
        print(f"work resumed {resumed_after:.3f}s after the sidecar restarted")
        # Promptly means at once (leases die with the process), not after the old lease's
        # 300 s or the next 30 s health ping; 15 s leaves room for a loaded machine.
        assert resumed_after < 15.0
        for iid in ids:
            state = retrying(functools.partial(client.wait_for_orchestration_completion, iid, timeout=60))
            assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
    finally:
        worker.stop()
        client.close()


@pytest.mark.slow
def test_entity_operations_apply_exactly_once_across_crashes(sidecar_proc: SidecarProcess) -> None:
    address = f"127.0.0.1:{sidecar_proc.port}"
    client = TaskHubGrpcClient(host_address=address)
    worker = make_worker(address)
    eid = EntityInstanceId("slow_counter", "crash")
    try:
        for _ in range(60):  # all queued before any worker runs them: one batch of 60
            client.signal_entity(eid, "add", 1)
        reset_entity_calls()
        worker.start()
        for kill in range(2):
            # Kill mid-batch: once the worker has run an operation of the batch...
            wait_until(lambda: entity_calls() > 0, f"no batch started before kill {kill}")
            sidecar_proc.kill()
            # ...and before the hub committed it: the file holds nothing applied.
            conn = sqlite3.connect(sidecar_proc.db)
            try:
                row = conn.execute("SELECT state FROM entities WHERE entity_id = ?", (str(eid),)).fetchone()
                queued = conn.execute(
                    "SELECT COUNT(*) FROM entity_inbox WHERE entity_id = ?", (str(eid),)
                ).fetchone()[0]
            finally:
                conn.close()
            assert row is not None and row[0] is None and queued == 60, (row, queued)
            # The worker finishes the lost batch locally (its completion fails); only then
            # restart, so the next batch's operations are counted from zero.
            wait_until(lambda: entity_calls() == 60, "the lost batch never finished")
            reset_entity_calls()
            sidecar_proc.start()
        deadline = time.monotonic() + 60
        while True:
            meta = retrying(functools.partial(client.get_entity, eid))
            if meta is not None and meta.backlog_queue_size == 0 and meta.get_state(int) == 60:
                break
            assert time.monotonic() < deadline, meta and (meta.backlog_queue_size, meta._state)
            time.sleep(0.1)
        time.sleep(0.5)
        meta = client.get_entity(eid)
        assert meta is not None and meta.get_state(int) == 60
        assert entity_calls() == 60  # the last batch ran once; the two lost ones left no trace
    finally:
        worker.stop()
        client.close()
