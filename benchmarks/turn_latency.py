"""Benchmark: the cost of one conversation turn through devhost, per backend.

Starts devhost (as a process, like a user would) on each backend with an instant fake
model, sends sequential messages with `?wait=` and reports the median and p90 round trip
of one turn, over several runs, plus each backend's median relative to the in-memory
reference. Also reports the SQLite task hub's commits per turn (from the WAL frame count


Run: .venv/bin/python benchmarks/turn_latency.py [--turns 40] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env
from tests.integration.harness import DevhostProcess

BACKENDS = [("memory", "normal"), ("sqlite", "normal"), ("sqlite", "full")]


def parse(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def one_run(
    backend: str, durability: str, turns: int, model: FakeModelServer, folder: Path
) -> tuple[list[float], list[float]]:
    env = model_env(model)
    host = DevhostProcess(
        folder / f"{backend}-{durability}.log",
        backend=backend,
        db_path=folder / f"{backend}-{durability}-{time.monotonic_ns()}.db" if backend == "sqlite" else None,
        env=env,
    )
    if durability == "full":
        host.extra_args = ["--durability", "full"]
    host.start()
    try:
        thread = f"bench-{time.monotonic_ns()}"
        assert host.api.post("/api/threads", {"thread_id": thread}).status == 201
        for i in range(3):  # warm up: imports, connections, first generation
            host.api.post(f"/api/threads/{thread}/messages?wait=30", {"content": f"warm {i}"})
        samples, inside = [], []
        for i in range(turns):
            started = time.perf_counter()
            reply = host.api.post(f"/api/threads/{thread}/messages?wait=30", {"content": f"turn {i}"})
            samples.append((time.perf_counter() - started) * 1000)
            assert reply.status == 200, reply.body
            found = host.api.get(reply.json["reply_url"]).json
            inside.append(
                (parse(found["reply"]["created_at"]) - parse(found["message"]["created_at"])) * 1000
            )
        return samples, inside
    finally:
        host.stop()


def commits_per_turn(turns: int, model: FakeModelServer, folder: Path) -> float:
    """SQLite commits per conversation turn: the hub runs here, devhost drives it by host:port."""
    from devhost.sqlite_hub import SqliteSidecar

    hub = SqliteSidecar(folder / "commits.db")
    hub.start()
    host = DevhostProcess(folder / "commits.log", backend=hub.address, env=model_env(model))
    host.start()
    try:
        thread = f"commits-{time.monotonic_ns()}"
        assert host.api.post("/api/threads", {"thread_id": thread}).status == 201
        host.api.post(f"/api/threads/{thread}/messages?wait=30", {"content": "warm up"})
        time.sleep(0.5)  # let the generation after the warm-up turn settle
        before = hub.commits
        for i in range(turns):
            reply = host.api.post(f"/api/threads/{thread}/messages?wait=30", {"content": f"turn {i}"})
            assert reply.status == 200, reply.body
        time.sleep(0.5)
        return (hub.commits - before) / turns
    finally:
        host.stop()
        hub.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    inner: dict[str, list[float]] = {}
    with FakeModelServer() as model, tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for backend, durability in BACKENDS:
                name = backend if backend == "memory" else f"{backend}-{durability}"
                samples, inside = one_run(backend, durability, args.turns, model, Path(tmp))
                results.setdefault(name, []).append(statistics.median(samples))
                inner.setdefault(name, []).append(statistics.median(inside))
                p90 = statistics.quantiles(samples, n=10)[-1]
                http_median, inside_median = statistics.median(samples), statistics.median(inside)
                print(
                    f"run {run + 1} {name:14s} HTTP median {http_median:7.1f} ms  p90 {p90:7.1f} ms"
                    f"  | user entry -> reply entry {inside_median:6.1f} ms"
                )
        per_turn = commits_per_turn(args.turns, model, Path(tmp))
    base = statistics.median(results["memory"])
    base_inner = statistics.median(inner["memory"])
    print(f"\nmedian turn over {args.runs} runs x {args.turns} turns (instant fake model):")
    print("  backend        HTTP round trip (POST ?wait)     inside the orchestration (user entry -> reply)")
    for name, medians in results.items():
        value, inside = statistics.median(medians), statistics.median(inner[name])
        print(
            f"  {name:14s} {value:7.1f} ms  x{value / base:.2f} vs memory"
            f"      {inside:7.1f} ms  x{inside / base_inner:.2f} vs memory"
        )
    print(f"SQLite task hub: {per_turn:.1f} commits per turn (each orchestration step is one commit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
