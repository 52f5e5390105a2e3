"""`python -m benchmarks`: the app's benchmark, through devhost over HTTP.

Sections (all by default; choose with --sections):

  latency     round trip p50/p95/p99 of one turn, sequential, per backend (memory,
              SQLite normal, SQLite full), each with its ratio to memory in the same run
  throughput  turns per second with 1, 10 and 50 threads sending at once (--with-200 adds
              200), with their round trips
  long        one thread to 1000 turns with 4 KiB messages: round trip at turns 10, 100
              and 1000, and the ratio turn 1000 / turn 10
  restart     time to the first and the last reply (and replies/s) after devhost is killed and
              restarted on its SQLite file with N turns in flight (--waiting, default 1000)
  idle        memory (RSS, MiB per 1000 threads, SQLite file size) and sequential-turn latency
              with N idle threads (--idle, default 10000) against none, per backend (memory,
              SQLite normal), with thread creation rate and ratios SQLite / memory
  commits     SQLite commits and durable work items per turn, counted by the hub

Prints a table and then the JSON; writes docs/benchmark-*.png (and the JSON) unless
--no-plots. `--quick` runs everything small (about two minutes); figures are then rougher.
"""

# git is run with fixed arguments to name the measured commit.
# ruff: noqa: S607

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import idle, restart, sections
from benchmarks.driver import SQLITE_NORMAL, Backend
from benchmarks.report import rounded, table
from tests.fakes.model_server import FakeModelServer

ROOT = Path(__file__).resolve().parents[1]
ALL_SECTIONS = ("latency", "throughput", "long", "restart", "idle", "commits")


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out + (" (working tree has uncommitted changes)" if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", default=",".join(ALL_SECTIONS), help="comma-separated (default: all)")
    parser.add_argument("--quick", action="store_true", help="every section small: about two minutes")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; quick 1)")
    parser.add_argument(
        "--turns", type=int, help="latency: sequential turns per run and backend (default 100)"
    )
    parser.add_argument(
        "--backends", default="memory,sqlite-normal,sqlite-full", help="latency: backends to compare"
    )
    parser.add_argument("--throughput-backend", default=SQLITE_NORMAL.name, help="default sqlite-normal")
    parser.add_argument("--levels", default="1,10,50", help="throughput: threads sending at once")
    parser.add_argument("--with-200", action="store_true", help="throughput: add 200 threads")
    parser.add_argument("--seconds", type=float, help="throughput: measured window per level (default 10)")
    parser.add_argument("--long-turns", default=None, help="long: checkpoints (default 10,100,1000)")
    parser.add_argument("--long-backend", default=SQLITE_NORMAL.name, help="default sqlite-normal")
    parser.add_argument("--message-bytes", type=int, default=4096, help="long: message size (default 4096)")
    parser.add_argument("--long-runs", type=int, help="long: runs (default: --runs); the slowest section")
    parser.add_argument(
        "--waiting", type=int, help="restart: turns in flight at the crash (default 1000; quick 20)"
    )
    parser.add_argument("--idle", type=int, help="idle: idle threads (default 10000; quick 200)")
    parser.add_argument("--idle-runs", type=int, help="idle: runs (default: --runs); the longest section")
    parser.add_argument(
        "--idle-turns", type=int, help="idle: sequential turns each side (default 40; quick 20)"
    )
    parser.add_argument(
        "--clients", type=int, default=16, help="idle, restart: concurrent clients for setup (default 16)"
    )
    parser.add_argument("--commit-turns", type=int, help="commits: turns counted (default 20)")
    parser.add_argument("--plots", type=Path, default=ROOT / "docs", help="folder for PNGs and JSON")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    args.runs = args.runs or (1 if quick else 3)
    args.turns = args.turns or (30 if quick else 100)
    args.seconds = args.seconds or (3.0 if quick else 10.0)
    args.long_turns = [int(n) for n in (args.long_turns or ("10,100" if quick else "10,100,1000")).split(",")]
    args.long_runs = args.long_runs or args.runs
    args.idle_runs = args.idle_runs or args.runs
    args.waiting = args.waiting or (20 if quick else 1000)
    args.idle = args.idle or (200 if quick else 10000)
    args.idle_turns = args.idle_turns or (20 if quick else 40)
    args.commit_turns = args.commit_turns or (5 if quick else 20)
    levels = [int(n) for n in args.levels.split(",")]
    args.levels = [*levels, 200] if args.with_200 and 200 not in levels else levels
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(ALL_SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(ALL_SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.disable(logging.WARNING)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    result: dict[str, Any] = {
        "meta": {
            "commit": _commit(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "runs": args.runs,
            "quick": args.quick,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    }
    errors: dict[str, str] = {}
    with FakeModelServer() as model, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        folder = Path(tmp)
        plan: list[tuple[str, str, Any]] = []
        if "latency" in args.sections:
            backends = [Backend.parse(b) for b in args.backends.split(",")]
            plan.append(
                (
                    "latency",
                    "latency",
                    lambda: sections.latency(
                        backends,
                        runs=args.runs,
                        turns=args.turns,
                        warmup=3,
                        turns_per_thread=20,
                        model=model,
                        folder=folder,
                        log=log,
                    ),
                )
            )
        if "throughput" in args.sections:
            plan.append(
                (
                    "throughput",
                    "throughput",
                    lambda: sections.throughput(
                        Backend.parse(args.throughput_backend),
                        levels=args.levels,
                        runs=args.runs,
                        seconds=args.seconds,
                        settle=1.0 if args.quick else 2.0,
                        model=model,
                        folder=folder,
                        log=log,
                    ),
                )
            )
        if "long" in args.sections:
            plan.append(
                (
                    "long",
                    "long_thread",
                    lambda: sections.long_thread(
                        Backend.parse(args.long_backend),
                        checkpoints=args.long_turns,
                        message_bytes=args.message_bytes,
                        window=5,
                        runs=args.long_runs,
                        model=model,
                        folder=folder,
                        log=log,
                    ),
                )
            )
        if "restart" in args.sections:
            plan.append(
                (
                    "restart",
                    "restart",
                    lambda: restart.restart(
                        waiting=args.waiting,
                        runs=args.runs,
                        durability="normal",
                        clients=args.clients,
                        model=model,
                        folder=folder,
                        log=log,
                    ),
                )
            )
        if "idle" in args.sections:
            plan.append(
                (
                    "idle",
                    "idle",
                    lambda: idle.idle(
                        idle=args.idle,
                        runs=args.idle_runs,
                        turns=args.idle_turns,
                        clients=args.clients,
                        model=model,
                        folder=folder,
                        log=log,
                    ),
                )
            )
        if "commits" in args.sections:
            plan.append(
                (
                    "commits",
                    "commits",
                    lambda: sections.commits(turns=args.commit_turns, model=model, folder=folder, log=log),
                )
            )
        for name, key, run in plan:
            log(f"== {name}")
            section_started = time.monotonic()
            try:
                result[key] = run()
            except Exception as failure:  # noqa: BLE001 - one failed section must not lose the others
                errors[name] = f"{type(failure).__name__}: {failure}"[:2000]
                log(f"  {name} failed: {errors[name]}")
            log(f"  ({time.monotonic() - section_started:.0f} s)")
    if errors:
        result["errors"] = errors
    result["meta"]["seconds"] = round(time.monotonic() - started, 1)
    print(table(result))
    printed = {k: v for k, v in result.items() if k != "long_thread"}
    if "long_thread" in result:
        printed["long_thread"] = {k: v for k, v in result["long_thread"].items() if k != "series"}
    print()
    print(json.dumps(rounded(printed), indent=2, default=str))
    if not args.no_plots:
        from benchmarks.plots import write_plots

        caption = f"{result['meta']['commit']}, {result['meta']['machine']}, {result['meta']['started_utc']}"
        written = write_plots(result, args.plots, caption)
        args.plots.mkdir(parents=True, exist_ok=True)
        data = args.plots / "benchmark-results.json"
        data.write_text(json.dumps(rounded(result), default=str) + "\n")
        for path in [*written, data]:
            log(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
