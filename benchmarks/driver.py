"""What every section uses: devhost as a process, a conversation over HTTP, statistics.

devhost runs exactly as a user starts it (`python -m devhost`, see
tests/integration/harness.py), on a fresh task hub file per run, talking to the fake
model server (tests/fakes/model_server.py) that answers at once with an echo of the last
user message. Rate limits are switched off: the benchmark is one caller sending far more
than 60 messages a minute.
"""

from __future__ import annotations

import math
import statistics
import time
import uuid
from collections.abc import Iterator, Sequence
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
def running(host: DevhostProcess) -> Iterator[DevhostProcess]:
    host.start(timeout=60)
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
