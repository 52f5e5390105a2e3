"""The `idle` section: memory and turn latency with N idle threads present.

Per run and backend (memory first, then SQLite): one devhost; a warm-up; sequential turns
on fresh threads and devhost's memory, both with no other threads (the "empty" side);
then N threads created by 16 concurrent clients (their rate is a figure too); then a wait
until devhost is quiet; then the same turns on fresh threads and the same memory reading
with the N threads present, idle (the "idle" side). Memory is read from /proc (VmRSS and
VmHWM of the devhost process), the SQLite hub's size from its files (db + -wal).

"Quiet" means: a sample of the created threads (the last 10, which the hub handles last
when it works in order) reports state `idle` through GET /api/threads/{id}, and then
devhost's own CPU time (utime + stime, /proc/PID/stat) grows by less than 5% of a core
over two 1 s intervals in a row. It is devhost's own CPU time, so the machine's other
load does not hold the wait up, only slows it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.driver import (
    MEMORY,
    SQLITE_NORMAL,
    Backend,
    BenchmarkError,
    create_threads,
    devhost,
    median,
    memory_mib,
    new_thread,
    percentile,
    running,
    turn,
    wait_cpu_quiet,
    wait_idle,
)
from tests.fakes.model_server import FakeModelServer
from tests.integration.harness import Api

Log = Callable[[str], None]
SAMPLE = 10  # threads polled until they report idle
MIB = 1024 * 1024


def _turns(api: Api, turns: int, per_thread: int, label: str) -> list[float]:
    samples: list[float] = []
    thread = ""
    for i in range(turns):
        if i % per_thread == 0:
            thread = new_thread(api, label)
        samples.append(turn(api, thread, f"{label} turn {i}"))
    return samples


def _files(db: Path | None) -> dict[str, float]:
    if db is None:
        return {}
    size = {suffix: Path(f"{db}{suffix}") for suffix in ("", "-wal")}
    db_mib, wal_mib = (p.stat().st_size / MIB if p.exists() else 0.0 for p in size.values())
    return {"db_mib": db_mib, "wal_mib": wal_mib, "files_mib": db_mib + wal_mib}


def _one(
    backend: Backend,
    *,
    idle: int,
    turns: int,
    clients: int,
    model: FakeModelServer,
    folder: Path,
    label: str,
) -> dict[str, Any]:
    host = devhost(backend, model, folder, label)
    with running(host) as running_host:
        api = running_host.api
        process = running_host.process
        if process is None:
            raise BenchmarkError("devhost has no process")
        _turns(api, 3, 3, "warm")
        empty = _turns(api, turns, 10, "empty")
        wait_cpu_quiet(process.pid)
        before = memory_mib(process.pid)
        files_before = _files(host.db_path)
        threads, create_s = create_threads(api, idle, "idle", clients)
        idle_wait_s = wait_idle(api, threads[-SAMPLE:], timeout=300 + idle * 0.2)
        settle_s = idle_wait_s + wait_cpu_quiet(process.pid, timeout=300 + idle * 0.1)
        after = memory_mib(process.pid)
        files_after = _files(host.db_path)
        loaded = _turns(api, turns, 10, "busy")
        final = memory_mib(process.pid)
    row: dict[str, Any] = {
        "create_s": create_s,
        "threads_per_s": idle / create_s,
        "started_per_s": idle / (create_s + idle_wait_s),
        "settle_s": settle_s,
        "empty_p50": percentile(empty, 50),
        "empty_p95": percentile(empty, 95),
        "idle_p50": percentile(loaded, 50),
        "idle_p95": percentile(loaded, 95),
        "rss_before_mib": before["rss_mib"],
        "rss_after_mib": after["rss_mib"],
        "rss_after_turns_mib": final["rss_mib"],
        "hwm_mib": final["hwm_mib"],
        "processes": after["processes"],
        "tree_rss_after_mib": after["tree_rss_mib"],
    }
    row["p50_ratio"] = row["idle_p50"] / row["empty_p50"]
    row["p95_ratio"] = row["idle_p95"] / row["empty_p95"]
    row["rss_ratio"] = row["rss_after_mib"] / row["rss_before_mib"]
    row["mib_per_1000"] = (row["rss_after_mib"] - row["rss_before_mib"]) * 1000 / idle
    if files_after:
        row |= {f"{k}_before": v for k, v in files_before.items()}
        row |= files_after
        row["files_kib_per_thread"] = (files_after["files_mib"] - files_before["files_mib"]) * 1024 / idle
    return row


#: what each backend reports (median over runs), and what SQLite reports against memory
FIGURES = (
    "threads_per_s",
    "started_per_s",
    "settle_s",
    "empty_p50",
    "empty_p95",
    "idle_p50",
    "idle_p95",
    "p50_ratio",
    "p95_ratio",
    "rss_before_mib",
    "rss_after_mib",
    "rss_after_turns_mib",
    "hwm_mib",
    "rss_ratio",
    "mib_per_1000",
    "db_mib",
    "wal_mib",
    "files_mib",
    "files_kib_per_thread",
)
VERSUS_MEMORY = ("threads_per_s", "started_per_s", "idle_p50", "idle_p95", "rss_after_mib", "mib_per_1000")


def idle(
    *,
    idle: int,
    runs: int,
    turns: int,
    clients: int,
    model: FakeModelServer,
    folder: Path,
    log: Log,
    backends: Sequence[Backend] = (MEMORY, SQLITE_NORMAL),
) -> dict[str, Any]:
    """Memory and sequential-turn latency with `idle` idle threads, against none, per backend."""
    per_run: dict[str, list[dict[str, Any]]] = {b.name: [] for b in backends}
    for run in range(runs):
        for backend in backends:
            row = _one(
                backend,
                idle=idle,
                turns=turns,
                clients=clients,
                model=model,
                folder=folder,
                label=f"idle-{backend.name}-{run}",
            )
            per_run[backend.name].append(row)
            files = f", files {row['files_mib']:.1f} MiB" if "files_mib" in row else ""
            log(
                f"  idle run {run + 1}/{runs} {backend.name}: {row['threads_per_s']:.0f} threads/s"
                f" created ({row['started_per_s']:.0f}/s until the last were idle),"
                f" settled in {row['settle_s']:.0f} s; RSS {row['rss_before_mib']:.0f} ->"
                f" {row['rss_after_mib']:.0f} MiB ({row['mib_per_1000']:.1f} MiB per 1000){files};"
                f" p50 {row['empty_p50']:.1f} -> {row['idle_p50']:.1f} ms,"
                f" p95 {row['empty_p95']:.1f} -> {row['idle_p95']:.1f} ms"
            )
    out: dict[str, Any] = {"idle_threads": idle, "runs": runs, "turns": turns, "clients": clients}
    out["backends"] = {
        name: {key: median([r[key] for r in rows]) for key in FIGURES if key in rows[0]} | {"per_run": rows}
        for name, rows in per_run.items()
    }
    base = per_run.get(MEMORY.name)
    if base is not None:
        for name, rows in per_run.items():
            if name == MEMORY.name:
                continue
            out["backends"][name]["vs_memory"] = {
                key: median([r[key] / b[key] for r, b in zip(rows, base, strict=True) if b[key]])
                for key in VERSUS_MEMORY
            }
    return out
