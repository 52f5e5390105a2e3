"""The benchmark's sections (restart and idle have modules of their own). Each returns plain
data (JSON-ready); the CLI prints and plots it.

Every figure is a median over `runs` separate runs; each run starts its own devhost on a
fresh task hub. Within a run, samples are HTTP round trips of one turn measured by the
client (`POST /api/threads/{id}/messages?wait=30` until its 200), so they include HTTP,
the durable orchestration, the entity and the activity that calls the (instant) model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.driver import (
    MEMORY,
    Backend,
    BenchmarkError,
    devhost,
    median,
    new_thread,
    percentile,
    running,
    turn,
)
from tests.fakes.model_server import FakeModelServer
from tests.integration.harness import Api

Log = Callable[[str], None]


def _summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "p99": percentile(samples, 99),
        "n": len(samples),
    }


# -- round trip per backend -------------------------------------------------------------------


def latency(
    backends: Sequence[Backend],
    *,
    runs: int,
    turns: int,
    warmup: int,
    turns_per_thread: int,
    model: FakeModelServer,
    folder: Path,
    log: Log,
) -> dict[str, Any]:
    """Sequential turns (one at a time) on each backend; p50/p95/p99 and ratios to memory.

    Backends take turns within each run (memory first), so a ratio compares numbers
    taken minutes apart at most, on the same machine load.
    """
    ordered = sorted(backends, key=lambda b: b != MEMORY)
    per_run: dict[str, list[dict[str, float]]] = {b.name: [] for b in ordered}
    for run in range(runs):
        for backend in ordered:
            with running(devhost(backend, model, folder, f"latency-{backend.name}-{run}")) as host:
                api = host.api
                thread = new_thread(api)
                for i in range(warmup):
                    turn(api, thread, f"warm-up {i}")
                samples: list[float] = []
                for i in range(turns):
                    if i % turns_per_thread == 0:
                        thread = new_thread(api)
                    samples.append(turn(api, thread, f"turn {i}"))
            summary = _summary(samples)
            per_run[backend.name].append(summary)
            log(
                f"  latency run {run + 1}/{runs} {backend.name:14s} p50 {summary['p50']:6.1f} ms"
                f"  p95 {summary['p95']:6.1f}  p99 {summary['p99']:6.1f}"
            )
    result: dict[str, Any] = {"runs": runs, "turns_per_run": turns, "backends": {}}
    for name, summaries in per_run.items():
        entry: dict[str, Any] = {q: median([s[q] for s in summaries]) for q in ("p50", "p95", "p99")}
        if MEMORY.name in per_run and name != MEMORY.name:
            base = per_run[MEMORY.name]
            for q in ("p50", "p95", "p99"):
                entry[f"{q}_vs_memory"] = median([s[q] / b[q] for s, b in zip(summaries, base, strict=True)])
        entry["per_run"] = summaries
        result["backends"][name] = entry
    return result


# -- throughput against concurrency -----------------------------------------------------------


def _load(api: Api, threads: list[str], seconds: float, settle: float) -> dict[str, Any]:
    """Each conversation sends turns back to back; counts turns that end inside the window.

    The window opens `settle` seconds after the start, or once every conversation has had
    its first reply if that is later: at high concurrency a turn takes longer than the
    settle time, and a window opened before the steady state would count too few."""
    start_gate = threading.Barrier(len(threads) + 1)
    stop = threading.Event()
    done: list[tuple[float, float]] = []  # (finished at, round trip ms)
    errors: list[str] = []
    lock = threading.Lock()
    answered: set[str] = set()
    all_answered = threading.Event()

    def conversation(thread: str) -> None:
        start_gate.wait()
        i = 0
        while not stop.is_set():
            try:
                elapsed = turn(api, thread, f"load {i}")
            except (BenchmarkError, OSError) as failure:
                with lock:
                    errors.append(str(failure)[:200])
                time.sleep(0.1)
                continue
            with lock:
                done.append((time.perf_counter(), elapsed))
                answered.add(thread)
                if len(answered) == len(threads):
                    all_answered.set()
            i += 1

    workers = [threading.Thread(target=conversation, args=(t,), daemon=True) for t in threads]
    for worker in workers:
        worker.start()
    start_gate.wait()
    settled = time.perf_counter() + settle
    all_answered.wait(timeout=300)
    window_start = max(settled, time.perf_counter())
    window_end = window_start + seconds
    time.sleep(max(0.0, window_end - time.perf_counter()))
    stop.set()
    for worker in workers:
        worker.join(90)
    inside = [ms for at, ms in done if window_start <= at <= window_end]
    return {
        "turns_per_s": len(inside) / seconds,
        **_summary(inside),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def throughput(
    backend: Backend,
    *,
    levels: Sequence[int],
    runs: int,
    seconds: float,
    settle: float,
    model: FakeModelServer,
    folder: Path,
    log: Log,
) -> dict[str, Any]:
    """Turns per second (and round trips) with N conversations sending at once, per level."""
    per_level: dict[int, list[dict[str, Any]]] = {n: [] for n in levels}
    for run in range(runs):
        with running(devhost(backend, model, folder, f"throughput-{backend.name}-{run}")) as host:
            for n in levels:
                threads = [new_thread(host.api, f"load{n}") for _ in range(n)]
                figures = _load(host.api, threads, seconds, settle)
                per_level[n].append(figures)
                log(
                    f"  throughput run {run + 1}/{runs} {backend.name} {n:3d} threads: "
                    f"{figures['turns_per_s']:6.1f} turns/s  p50 {figures['p50']:7.1f} ms"
                    f"  p95 {figures['p95']:7.1f} ms  errors {figures['errors']}"
                )
    levels_out: dict[str, Any] = {}
    for n, rows in per_level.items():
        levels_out[str(n)] = {
            "turns_per_s": median([r["turns_per_s"] for r in rows]),
            "p50": median([r["p50"] for r in rows]),
            "p95": median([r["p95"] for r in rows]),
            "p99": median([r["p99"] for r in rows]),
            "errors": sum(r["errors"] for r in rows),
            "first_error": next((r["first_error"] for r in rows if r["first_error"]), None),
            "per_run": [r["turns_per_s"] for r in rows],
        }
    return {"backend": backend.name, "runs": runs, "window_s": seconds, "levels": levels_out}


# -- one long thread --------------------------------------------------------------------------


def long_thread(
    backend: Backend,
    *,
    checkpoints: Sequence[int],
    message_bytes: int,
    window: int,
    runs: int,
    model: FakeModelServer,
    folder: Path,
    log: Log,
) -> dict[str, Any]:
    """One thread taken to max(checkpoints) turns with messages of `message_bytes`.

    The figure at turn k is the median round trip of turns k-window+1 .. k.
    """
    last = max(checkpoints)
    series: list[list[float]] = []
    failures: list[str] = []
    for run in range(runs):
        samples: list[float] = []
        with running(devhost(backend, model, folder, f"long-{backend.name}-{run}")) as host:
            thread = new_thread(host.api, "long")
            filler = "x" * message_bytes
            try:
                for i in range(1, last + 1):
                    stamp = f"turn {i:06d} "
                    samples.append(turn(host.api, thread, stamp + filler[len(stamp) :]))
            except BenchmarkError as failure:
                failures.append(f"run {run + 1}, turn {len(samples) + 1}: {failure}")
                log(f"  long thread run {run + 1}: stopped at turn {len(samples) + 1}: {failure}")
        series.append(samples)
        at = {k: median(samples[k - window : k]) for k in checkpoints if len(samples) >= k}
        log(
            f"  long thread run {run + 1}/{runs} {backend.name}: "
            + "  ".join(f"turn {k}: {v:.1f} ms" for k, v in at.items())
        )
    out: dict[str, Any] = {
        "backend": backend.name,
        "runs": runs,
        "message_bytes": message_bytes,
        "window": window,
        "at_turn": {},
        "failures": failures,
    }
    for k in checkpoints:
        values = [median(s[k - window : k]) for s in series if len(s) >= k]
        out["at_turn"][str(k)] = median(values) if values else None
    first, final = str(min(checkpoints)), str(last)
    if out["at_turn"][first] and out["at_turn"][final]:
        ratios = [
            median(s[last - window : last]) / median(s[min(checkpoints) - window : min(checkpoints)])
            for s in series
            if len(s) >= last
        ]
        out[f"ratio_{final}_to_{first}"] = median(ratios)
    out["series"] = [[round(v, 2) for v in s] for s in series]
    return out


# -- SQLite commits and durable work items per turn -------------------------------------------


def commits(*, turns: int, model: FakeModelServer, folder: Path, log: Log) -> dict[str, Any]:
    """Commits and work items per turn, counted by the SQLite hub itself.

    The hub runs in this process (devhost reaches it by host:port, as it would a remote
    sidecar), so its own counters can be read: `SqliteSidecar.commits` (write transactions
    committed) and the completions it is handed, counted by wrapping the hub's
    complete_orchestration / complete_activity / complete_entity (one call per finished
    work item). Counted over `turns` turns on one thread, after a warm-up turn, each side
    taken once the hub has been quiet for 0.5 s.
    """
    from devhost.sqlite_hub import SqliteSidecar

    sidecar = SqliteSidecar(folder / "commits.db")
    sidecar.start()
    counts = {"orchestration": 0, "activity": 0, "entity": 0}
    lock = threading.Lock()
    hub: Any = sidecar.hub
    for kind in counts:
        original = getattr(hub, f"complete_{kind}")

        def counted(request: Any, _original: Any = original, _kind: str = kind) -> Any:
            result = _original(request)
            with lock:
                counts[_kind] += 1
            return result

        setattr(hub, f"complete_{kind}", counted)

    def quiet() -> tuple[int, dict[str, int]]:
        last: tuple[int, dict[str, int]] = (-1, {})
        while True:
            with lock:
                now = (sidecar.commits, dict(counts))
            if now == last:
                return now
            last = now
            time.sleep(0.5)

    try:
        with running(devhost(sidecar.address, model, folder, "commits")) as host:
            thread = new_thread(host.api, "commits")
            turn(host.api, thread, "warm-up")
            commits0, items0 = quiet()
            for i in range(turns):
                turn(host.api, thread, f"turn {i}")
            commits1, items1 = quiet()
    finally:
        sidecar.stop()
    per_turn = {kind: (items1[kind] - items0[kind]) / turns for kind in counts}
    out = {
        "turns": turns,
        "commits_per_turn": (commits1 - commits0) / turns,
        "work_items_per_turn": sum(per_turn.values()),
        "orchestration_work_items_per_turn": per_turn["orchestration"],
        "activity_work_items_per_turn": per_turn["activity"],
        "entity_work_items_per_turn": per_turn["entity"],
    }
    log(
        f"  commits: {out['commits_per_turn']:.2f} per turn;"
        f" work items {out['work_items_per_turn']:.2f} per turn"
        f" (orchestration {per_turn['orchestration']:.2f}, activity {per_turn['activity']:.2f},"
        f" entity {per_turn['entity']:.2f})"
    )
    return out
