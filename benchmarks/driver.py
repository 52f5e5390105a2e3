"""What every section uses: devhost as a process, a conversation over HTTP, statistics.

devhost runs exactly as a user starts it (`python -m devhost`, see
tests/integration/harness.py), on a fresh task hub file per run, talking to the fake
model server (tests/fakes/model_server.py) that answers at once with an echo of the last
user message. Rate limits are switched off: the benchmark is one caller sending far more
than 60 messages a minute.
"""

from __future__ import annotations

import math
import os
import statistics
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env
from tests.integration.harness import Api, DevhostProcess


@dataclass(frozen=True)
class Backend:
    """One way to run devhost's task hub: `memory`, or `sqlite` with a durability."""

    kind: str
    durability: str = "normal"

    @property
    def name(self) -> str:
        return "memory" if self.kind == "memory" else f"sqlite-{self.durability}"

    @classmethod
    def parse(cls, name: str) -> Backend:
        if name == "memory":
            return cls("memory")
        kind, _, durability = name.partition("-")
        if kind != "sqlite" or durability not in ("full", "normal"):
            raise ValueError(f"unknown backend {name!r}: memory, sqlite-normal or sqlite-full")
        return cls("sqlite", durability)


MEMORY = Backend("memory")
SQLITE_NORMAL = Backend("sqlite", "normal")
SQLITE_FULL = Backend("sqlite", "full")


def app_env(model: FakeModelServer) -> dict[str, str]:
    return {
        **model_env(model),
        "RATE_LIMIT_MESSAGES_PER_MINUTE": "0",
        "RATE_LIMIT_THREADS_PER_PRINCIPAL": "0",
        "RATE_LIMIT_TOKENS_PER_DAY": "0",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "",
    }


def devhost(
    backend: Backend | str, model: FakeModelServer, folder: Path, label: str, db: Path | None = None
) -> DevhostProcess:
    """A devhost process (not started) on `backend`: a Backend, or a sidecar's host:port."""
    spec = backend.kind if isinstance(backend, Backend) else backend
    if db is None and isinstance(backend, Backend) and backend.kind == "sqlite":
        db = folder / f"{label}-{uuid.uuid4().hex[:8]}.db"
    host = DevhostProcess(folder / f"{label}.log", backend=spec, db_path=db, env=app_env(model))
    if isinstance(backend, Backend) and backend.kind == "sqlite":
        host.extra_args += ["--durability", backend.durability]
    host.extra_args += ["--no-local-model"]
    return host


@contextmanager
def running(host: DevhostProcess, timeout: float = 60.0) -> Iterator[DevhostProcess]:
    host.start(timeout=timeout)
    try:
        yield host
    finally:
        if host.process is not None and host.process.poll() is None:
            try:
                host.stop(timeout=30)
            except RuntimeError:
                host.kill()


class BenchmarkError(RuntimeError):
    """The app answered something other than what a turn should produce."""


def new_thread(api: Api, prefix: str = "bench") -> str:
    thread = f"{prefix}-{uuid.uuid4().hex[:12]}"
    created = api.post("/api/threads", {"thread_id": thread})
    if created.status != 201:
        raise BenchmarkError(f"POST /api/threads answered {created.status}: {created.body[:300]!r}")
    return thread


def create_threads(api: Api, count: int, prefix: str, clients: int = 16) -> tuple[list[str], float]:
    """`count` threads created by `clients` concurrent HTTP clients; (ids in order, seconds).

    A creation that fails is tried again (twice); a 409 on a retry means the first attempt
    did create the thread before its answer was lost."""

    def create(index: int) -> str:
        thread = f"{prefix}-{index:06d}-{uuid.uuid4().hex[:8]}"
        last = ""
        for attempt in range(3):
            try:
                created = api.post("/api/threads", {"thread_id": thread}, timeout=120)
            except OSError as failure:
                last = f"{type(failure).__name__}: {failure}"
                continue
            if created.status == 201 or (created.status == 409 and attempt > 0):
                return thread
            last = f"{created.status}: {created.body[:300]!r}"
        raise BenchmarkError(f"POST /api/threads failed 3 times, last {last}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, min(clients, count))) as pool:
        threads = list(pool.map(create, range(count)))
    return threads, time.perf_counter() - started


def turn(api: Api, thread: str, content: str, wait: int = 30) -> float:
    """One turn, `POST /api/threads/{id}/messages?wait=`; returns its round trip in ms."""
    started = time.perf_counter()
    answer = api.post(f"/api/threads/{thread}/messages?wait={wait}", {"content": content}, timeout=wait + 30)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status != 200:
        raise BenchmarkError(f"a turn answered {answer.status} (200 expected): {answer.body[:300]!r}")
    return elapsed


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


# -- the devhost process, as the kernel sees it ------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (devhost runs its backends in-process; this checks)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo += [int(c) for c in children.read().split()]
            except OSError:
                continue
    return found


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_mib(pid: int) -> dict[str, float]:
    """Resident memory of devhost (VmRSS, and its peak VmHWM) and of its whole process tree."""
    tree = process_tree(pid)
    return {
        "rss_mib": _status_kib(pid, "VmRSS") / 1024,
        "hwm_mib": _status_kib(pid, "VmHWM") / 1024,
        "tree_rss_mib": sum(_status_kib(p, "VmRSS") for p in tree) / 1024,
        "processes": len(tree),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process tree so far (utime and stime in /proc/PID/stat)."""
    ticks = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), after the name
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_cpu_quiet(pid: int, *, below: float = 0.05, interval: float = 1.0, timeout: float = 300.0) -> float:
    """Wait until the process tree uses less than `below` of one core over two intervals in a
    row; returns the seconds waited. Its own CPU time, so the machine's other load does not count."""
    started = time.monotonic()
    quiet = 0
    before = cpu_seconds(pid)
    while quiet < 2:
        if time.monotonic() - started > timeout:
            raise BenchmarkError(f"devhost kept using CPU for {timeout:.0f} s after the threads were created")
        time.sleep(interval)
        now = cpu_seconds(pid)
        quiet = quiet + 1 if (now - before) / interval < below else 0
        before = now
    return time.monotonic() - started


def wait_idle(api: Api, threads: Sequence[str], timeout: float) -> float:
    """Wait until each of `threads` reports state idle; returns the seconds waited."""
    started = time.monotonic()
    waiting = list(threads)
    while waiting:
        summary = api.get(f"/api/threads/{waiting[0]}")
        if summary.status == 200 and summary.json.get("state") == "idle":
            waiting.pop(0)
            continue
        if time.monotonic() - started > timeout:
            raise BenchmarkError(
                f"thread {waiting[0]} did not report idle within {timeout:.0f} s"
                f" (last answer {summary.status}: {summary.body[:200]!r})"
            )
        time.sleep(0.2)
    return time.monotonic() - started
