"""The `restart` section: recovery after a crash with N turns in flight (SQLite).

Setup, on a first devhost: N threads, created by 16 concurrent clients, and a wait until
every thread has started and devhost is quiet; the fake model is then told to hang (every
chat request waits 15 minutes before answering), and the app's model timeout is raised
to its maximum so no turn gives up while the setup runs; then each thread gets one
message (16 concurrent clients). The setup is complete once every message reports
`answering` (GET /api/threads/{id}/messages/{mid}): the orchestration has taken it and, in
the same step, scheduled its `call_model` activity. devhost runs 16 activities at a time,
so 16 turns are then waiting on the model itself and the rest on an activity slot. devhost
is killed (SIGKILL, a crash), the model made instant again, and a new devhost started on
the same SQLite file.

Measured from starting the new process: when it is ready, when the first reply is seen,
when all are seen, and replies per second after ready. Replies are watched by 32 clients
in the order the messages were sent, each long-polling one message
(`GET ...?wait=10`) until it is answered, then taking the next unwatched one: replies
mostly come in that order, and a reply that comes out of order is seen as soon as a
watcher reaches it, which is immediately after the ones before it. Every wait has a
deadline that grows with N, and ends the section with an error saying what was missing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.driver import (
    Backend,
    BenchmarkError,
    create_threads,
    devhost,
    median,
    running,
    wait_cpu_quiet,
    wait_idle,
)
from devhost.work_items import MAX_CONCURRENT_ACTIVITIES
from tests.fakes.model_server import FakeModelServer, echo, reply
from tests.integration.harness import Api

Log = Callable[[str], None]
HANG_SECONDS = 900.0
#: the first devhost's model settings: one request may hang 10 minutes, a turn 30 (the maxima)
PATIENT_MODEL = {"MODEL_TIMEOUT_SECONDS": "600", "MODEL_MAX_ATTEMPTS": "1", "MODEL_RETRY_MAX_SECONDS": "1800"}
WATCHERS = 32


def _send(api: Api, threads: list[str], clients: int) -> list[tuple[str, str]]:
    def send(thread: str) -> tuple[str, str]:
        sent = api.post(f"/api/threads/{thread}/messages", {"content": "are you there?"}, timeout=120)
        if sent.status != 202:
            raise BenchmarkError(f"a message answered {sent.status} (202 expected): {sent.body[:300]!r}")
        return thread, str(sent.json["message_id"])

    with ThreadPoolExecutor(max_workers=max(1, min(clients, len(threads)))) as pool:
        return list(pool.map(send, threads))


def _status(api: Api, item: tuple[str, str], wait: int = 0) -> str:
    thread, message = item
    found = api.request("GET", f"/api/threads/{thread}/messages/{message}?wait={wait}", timeout=wait + 60)
    if found.status != 200:
        raise BenchmarkError(f"GET {thread}/messages/{message} answered {found.status}: {found.body[:300]!r}")
    return str(found.json.get("status"))


def _all_in_flight(api: Api, pending: list[tuple[str, str]], clients: int, timeout: float) -> float:
    """Wait until every message reports `answering`; returns the seconds waited.

    First the last 10 sent, one at a time (cheap: the hub takes messages about in order),
    then sweeps over all of them until none is left queued."""
    started = time.monotonic()

    def check(statuses: list[str], left: list[tuple[str, str]]) -> list[tuple[str, str]]:
        done = [s for s in statuses if s in ("answered", "failed")]
        if done:
            raise BenchmarkError(
                f"{len(done)} turns ended while the model hung ({done[0]}): no crash to test"
            )
        left = [item for item, status in zip(left, statuses, strict=True) if status != "answering"]
        if left and time.monotonic() - started > timeout:
            raise BenchmarkError(
                f"{len(left)} of {len(pending)} messages still queued {timeout:.0f} s after sending"
            )
        if left:
            time.sleep(0.5)
        return left

    for item in pending[-10:]:
        while check([_status(api, item)], [item]):
            pass  # check() waited 0.5 s
    left = list(pending)
    with ThreadPoolExecutor(max_workers=max(1, min(clients, len(left)))) as pool:
        while left:
            left = check(list(pool.map(lambda item: _status(api, item), left)), left)
    return time.monotonic() - started


def _watch(api: Api, pending: list[tuple[str, str]], started: float, timeout: float) -> list[float]:
    """Seconds from `started` at which each reply was seen; raises at the deadline."""
    todo = deque(pending)
    seen: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def watcher() -> None:
        while True:
            with lock:
                if failures or not todo:
                    return
                item = todo.popleft()
            while True:
                remaining = deadline - time.monotonic()
                try:
                    status = _status(api, item, wait=max(1, min(10, int(remaining))))
                except (BenchmarkError, OSError) as failure:
                    status = f"error {failure}"
                if status == "answered":
                    with lock:
                        seen.append(time.perf_counter() - started)
                    break
                if status == "failed" or remaining <= 0 or failures:
                    with lock:
                        failures.append(f"{item[0]}/{item[1]}: {status}")
                    return
                if status.startswith("error"):
                    time.sleep(0.2)

    workers = [threading.Thread(target=watcher, daemon=True) for _ in range(min(WATCHERS, len(pending)))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout + 120)
    if failures or len(seen) < len(pending):
        raise BenchmarkError(
            f"{len(seen)} of {len(pending)} replies seen within {timeout:.0f} s of the restart;"
            f" first problem: {failures[0] if failures else 'watchers stuck'}"
        )
    return seen


def restart(
    *,
    waiting: int,
    runs: int,
    durability: str,
    clients: int,
    model: FakeModelServer,
    folder: Path,
    log: Log,
) -> dict[str, Any]:
    """Time to the first and the last reply after devhost restarts with N turns in flight."""
    rows: list[dict[str, float]] = []
    backend = Backend("sqlite", durability)
    timeout = 120 + waiting * 0.5  # for each stage: on a loaded 2-core machine, 1000 turns take ~1-2 min
    for run in range(runs):
        db = folder / f"restart-{run}.db"
        first = devhost(backend, model, folder, f"restart-{run}-a", db=db)
        first.env.update(PATIENT_MODEL)
        with running(first) as host:
            setup = time.perf_counter()
            threads, create_s = create_threads(host.api, waiting, "restart", clients)
            # Every thread fully started (the hub quiet) before the messages go out, so the
            # hub takes the messages, and schedules their model calls, in the order they were
            # sent: the order the watchers below look for replies in. A thread with start-up
            # work still queued takes its message along with that work, ahead of older
            # messages to threads that had finished starting.
            wait_idle(host.api, threads[-10:], timeout)
            assert host.process is not None
            wait_cpu_quiet(host.process.pid, timeout=timeout)
            model.clear_requests()
            model.set_default(reply("too late", delay=HANG_SECONDS))
            sent = time.perf_counter()
            pending = _send(host.api, threads, clients)
            send_s = time.perf_counter() - sent
            in_flight_s = _all_in_flight(host.api, pending, clients, timeout)
            try:  # and every activity slot is taken by a model call that hangs
                model.wait_for_requests(min(waiting, MAX_CONCURRENT_ACTIVITIES), timeout=60)
            except TimeoutError as missing:
                raise BenchmarkError(f"the model calls did not start: {missing}") from None
            on_model = len(model.requests)
            setup_s = time.perf_counter() - setup
            host.kill()
        model.set_default(echo())
        second = devhost(backend, model, folder, f"restart-{run}-b", db=db)
        started = time.perf_counter()
        with running(second, timeout=timeout) as host:
            ready = time.perf_counter() - started
            times = _watch(host.api, pending, started, timeout)
        row = {
            "ready_s": ready,
            "first_reply_s": min(times),
            "all_replies_s": max(times),
            "replies_per_s": waiting / max(max(times) - ready, 1e-9),
            "setup_s": setup_s,
            "create_threads_per_s": waiting / create_s,
            "send_messages_per_s": waiting / send_s,
            "in_flight_wait_s": in_flight_s,
            "waiting_on_model": on_model,
        }
        rows.append(row)
        log(
            f"  restart run {run + 1}/{runs} ({waiting} waiting, {on_model} on the model; setup"
            f" {setup_s:.0f} s): ready {ready * 1000:.0f} ms,"
            f" first reply {row['first_reply_s'] * 1000:.0f} ms,"
            f" all {row['all_replies_s'] * 1000:.0f} ms ({row['replies_per_s']:.1f} replies/s)"
        )
    keys = ("ready_s", "first_reply_s", "all_replies_s", "replies_per_s", "setup_s", "waiting_on_model")
    return {
        "backend": backend.name,
        "waiting": waiting,
        "runs": runs,
        **{key: median([r[key] for r in rows]) for key in keys},
        "per_run": rows,
    }
