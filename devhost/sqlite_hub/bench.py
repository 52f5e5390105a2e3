"""Benchmark: SQLite commits per orchestration step, and orchestration latency per backend.

Why this module exists: durability has a price; this measures it. It runs a simple
orchestration (one activity) repeatedly against the in-memory reference backend, the
SQLite hub with ``durability="normal"`` and with ``durability="full"``, and prints:

* SQLite commits per orchestration step (and per orchestration), counted by the hub;
* the median (and p90) wall time from scheduling to completion, per backend.

Run: ``python -m devhost.sqlite_hub.bench [--runs 30]``
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from durabletask import task
from durabletask.client import TaskHubGrpcClient
from durabletask.testing import create_test_backend
from durabletask.worker import TaskHubGrpcWorker

from devhost.sqlite_hub.server import SqliteSidecar


def bench_activity(ctx: task.ActivityContext, x: int) -> int:
    return x + 1


def bench_orchestration(ctx: task.OrchestrationContext, x: int) -> Generator[Any, Any, Any]:
    return (yield ctx.call_activity(bench_activity, input=x))


@dataclass
class Result:
    backend: str
    median_ms: float
    p90_ms: float
    commits_per_step: float | None = None
    commits_per_orchestration: float | None = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(address: str, runs: int, warmup: int) -> list[float]:
    worker: Any = TaskHubGrpcWorker(host_address=address)  # start/stop are unannotated upstream
    worker.add_orchestrator(bench_orchestration)
    worker.add_activity(bench_activity)
    worker.start()
    client = TaskHubGrpcClient(host_address=address)
    times: list[float] = []
    try:
        for i in range(warmup + runs):
            began = time.perf_counter()
            iid = client.schedule_new_orchestration(bench_orchestration, input=i)
            state = client.wait_for_orchestration_completion(iid, timeout=60)
            elapsed = time.perf_counter() - began
            if state is None or state.serialized_output != str(i + 1):
                raise RuntimeError(f"unexpected result {state}")
            if i >= warmup:
                times.append(elapsed)
    finally:
        worker.stop()
        client.close()
    return times


def _summarise(name: str, times: list[float]) -> Result:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return Result(name, statistics.median(times) * 1000, p90 * 1000)


def bench_memory(runs: int, warmup: int) -> Result:
    port = _free_port()
    backend: Any = create_test_backend(port=port)
    try:
        return _summarise("memory", _run(f"127.0.0.1:{port}", runs, warmup))
    finally:
        backend.stop()


def bench_sqlite(durability: str, runs: int, warmup: int, directory: pathlib.Path) -> Result:
    sidecar = SqliteSidecar(
        directory / f"bench-{durability}.db", durability="full" if durability == "full" else "normal"
    )
    sidecar.start()
    try:
        assert sidecar.hub is not None
        commits0, steps0 = sidecar.commits, sidecar.hub.steps_applied
        times = _run(sidecar.address, runs, warmup)
        commits, steps = sidecar.commits - commits0, sidecar.hub.steps_applied - steps0
    finally:
        sidecar.stop()
    result = _summarise(f"sqlite-{durability}", times)
    result.commits_per_step = commits / steps if steps else None
    result.commits_per_orchestration = commits / (runs + warmup)
    return result


def bench_restart(directory: pathlib.Path, count: int = 5) -> tuple[float, float]:
    """Seconds from a restarted sidecar listening to (first activity run, all completed).

    Work is queued, the sidecar is stopped with a worker connected and waiting, and a new
    sidecar is started on the same file and port; the worker reconnects with short backoff.
    """
    from durabletask.grpc_options import GrpcWorkerResiliencyOptions

    port = _free_port()
    path = directory / "bench-restart.db"
    first: list[float] = []

    def marking_activity(ctx: task.ActivityContext, x: int) -> int:
        first.append(time.perf_counter())
        return x + 1

    def restart_orchestration(ctx: task.OrchestrationContext, x: int) -> Generator[Any, Any, Any]:
        return (yield ctx.call_activity(marking_activity, input=x))

    sidecar = SqliteSidecar(path, port=port)
    sidecar.start()
    client = TaskHubGrpcClient(host_address=sidecar.address)
    ids = [client.schedule_new_orchestration(restart_orchestration, input=i) for i in range(count)]
    client.close()  # its channel would be in reconnect backoff after the stop and fail fast
    sidecar.stop()
    worker: Any = TaskHubGrpcWorker(
        host_address=f"127.0.0.1:{port}",
        resiliency_options=GrpcWorkerResiliencyOptions(
            reconnect_backoff_base_seconds=0.05, reconnect_backoff_cap_seconds=0.2
        ),
    )
    worker.add_orchestrator(restart_orchestration)
    worker.add_activity(marking_activity)
    worker.start()
    time.sleep(0.5)
    sidecar = SqliteSidecar(path, port=port)
    sidecar.start()
    restarted = time.perf_counter()
    client = TaskHubGrpcClient(host_address=sidecar.address)
    try:
        for iid in ids:
            client.wait_for_orchestration_completion(iid, timeout=60)
        done = time.perf_counter()
    finally:
        worker.stop()
        client.close()
        sidecar.stop()
    return min(first) - restarted, done - restarted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.sqlite_hub.bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        benches: list[Callable[[], Result]] = [
            lambda: bench_memory(args.runs, args.warmup),
            lambda: bench_sqlite("normal", args.runs, args.warmup, pathlib.Path(tmp)),
            lambda: bench_sqlite("full", args.runs, args.warmup, pathlib.Path(tmp)),
        ]
        for bench in benches:
            results.append(bench())
    print(
        "simple orchestration (1 activity, 2 orchestration steps),"
        f" {args.runs} runs after {args.warmup} warm-up"
    )
    print(f"{'backend':<14} {'median ms':>10} {'p90 ms':>8} {'commits/step':>13} {'commits/orch':>13}")
    for r in results:
        per_step = "-" if r.commits_per_step is None else f"{r.commits_per_step:.2f}"
        per_orch = "-" if r.commits_per_orchestration is None else f"{r.commits_per_orchestration:.2f}"
        print(f"{r.backend:<14} {r.median_ms:>10.2f} {r.p90_ms:>8.2f} {per_step:>13} {per_orch:>13}")
    print("commits/step = all hub commits (start, steps, activity results) / orchestration steps applied;")
    print("each step itself is exactly one transaction (handing out work and leases costs no commit).")
    with tempfile.TemporaryDirectory() as tmp:
        resumed, finished = bench_restart(pathlib.Path(tmp))
    print(f"after a restart: first queued activity ran {resumed * 1000:.0f} ms after the sidecar listened;")
    print(f"all 5 queued orchestrations completed after {finished * 1000:.0f} ms", end="")
    print(" (worker reconnect backoff 50-200 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
