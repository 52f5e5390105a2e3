"""Where devhost's CPU goes per durable work item: gRPC and protobuf vs the rest.

devhost drives its in-process SQLite hub over loopback gRPC, as it drives any external
sidecar. This measures what that costs: the same workload as devhost (the SQLite hub and
the work-item driver in one process, a chain orchestration calling activities) is run
twice, once plain for the process CPU per work item, once under yappi's CPU clock (every
Python thread, builtins included) for the split by category. Profiling slows the run
about 3x, so its figures are shares, not times. Not a test: run it by hand.

    .venv/bin/pip install yappi==1.7.6
    .venv/bin/python -m devhost.profile_work_items --orchestrations 100 --activities 3
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import resource
import tempfile
import time
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import Any

import azure.durable_functions as df
from durabletask import task
from durabletask.client import AsyncTaskHubGrpcClient

from devhost.app_index import index_functions
from devhost.invoker import Invoker
from devhost.work_items import WorkItemDriver

# (category, substrings of a function's module path or name); first match wins
CATEGORIES = [
    ("protobuf (de)serialization", ("google/protobuf", "SerializeToString", "ParseFromString", "FromString")),
    ("gRPC (Python and Cython layers)", ("/grpc/", "grpc._cython", "cygrpc", "_cython")),
    ("SQLite hub: sqlite3 calls", ("sqlite3", "<method 'execute", "<method 'commit", "<method 'fetch")),
    ("SQLite hub: Python", ("devhost/sqlite_hub",)),
    ("app + Durable SDKs", ("azure/durable_functions", "azure/functions", "durabletask/")),
    ("devhost driver + invoker", ("devhost/",)),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
    ("json, base64", ("json/", "base64.py", "binascii")),
]


OTHER = "other (builtins, stdlib)"


def build_app(activities: int) -> df.DFApp:
    app = df.DFApp()

    @app.orchestration_trigger(context_name="context")
    def chain(context: task.OrchestrationContext, _input: Any) -> Generator[task.Task[Any], Any, list[int]]:
        results: list[int] = []
        for index in range(activities):
            results.append((yield context.call_activity("step", input=index)))
        return results

    @app.activity_trigger(input_name="value")
    def step(value: int) -> int:
        return value + 1

    return app


async def workload(db: Path, orchestrations: int, activities: int) -> tuple[int, float, float]:
    """(work items, wall seconds, process CPU seconds) for one run."""
    from devhost.sqlite_hub import SqliteSidecar

    hub = SqliteSidecar(db)
    hub.start()
    invoker = Invoker("{}", ".")
    driver = WorkItemDriver(hub.address, index_functions(build_app(activities)), invoker)
    client = AsyncTaskHubGrpcClient(host_address=hub.address, logger=logging.getLogger("durabletask.client"))
    runner = asyncio.create_task(driver.run())
    try:
        # one warm-up instance so connection setup is not counted
        await client.wait_for_orchestration_completion(await client.schedule_new_orchestration("chain"))
        cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        ids = [await client.schedule_new_orchestration("chain") for _ in range(orchestrations)]
        for instance_id in ids:
            state = await client.wait_for_orchestration_completion(instance_id, timeout=120)
            if state is None or state.runtime_status.name != "COMPLETED":
                raise RuntimeError(f"{instance_id} did not complete: {state}")
        cpu1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    finally:
        await driver.stop()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await client.close()
        invoker.close()
        hub.stop(grace=1)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    items = orchestrations * (2 * activities + 1)  # a start, one completion per activity; activities
    return items, wall1 - wall0, cpu


def _category(where: str) -> str:
    for category, needles in CATEGORIES:
        if any(n in where for n in needles):
            return category
    return OTHER


#: stdlib plumbing whose cost belongs to whoever uses it (gRPC's server waits on Conditions)
PLUMBING = ("threading.py", "queue.py", "contextlib.py", "concurrent/", "_weakrefset.py")


def _passes_through(module: str, name: str, builtin: bool) -> bool:
    where = f"{module} {name}"
    return (builtin and _category(where) == OTHER) or any(p in module for p in PLUMBING)


def categorize(stats: Any) -> dict[str, float]:
    """Own CPU by category. Builtins (locks, queues, protobuf accessors) and stdlib plumbing
    (threading, queue, contextlib) count for the category of their caller, unless they are a
    category of their own (protobuf serialization, sqlite3): a `Condition` that gRPC's
    server waits on is gRPC's cost."""
    totals: dict[str, float] = defaultdict(float)
    for stat in stats:
        own = _category(f"{stat.module} {stat.name}")
        if not _passes_through(stat.module, stat.name, stat.builtin):
            totals[own] += stat.tsub
        for child in stat.children:
            if _passes_through(child.module, child.name, child.builtin):
                totals[own if own not in (OTHER,) else PLUMBING_LABEL] += child.tsub
    return dict(totals)


PLUMBING_LABEL = "locks, queues, contextlib (caller unknown)"


async def grpc_alone(items: int) -> float:
    """Process CPU per work item of the loopback gRPC path alone: the hub streams a work item
    of a realistic size and the driver completes it with one unary call, as devhost does."""
    from concurrent import futures

    import grpc
    from durabletask.internal import orchestrator_service_pb2 as pb
    from durabletask.internal import orchestrator_service_pb2_grpc as stubs

    request = pb.ActivityRequest(name="step", taskId=1)
    request.orchestrationInstance.instanceId = "0123456789abcdef0123456789abcdef"
    request.input.value = "1"
    item = pb.WorkItem(activityRequest=request, completionToken="token-0123456789")

    class Servicer(stubs.TaskHubSidecarServiceServicer):
        def GetWorkItems(self, req: Any, context: Any) -> Any:
            for _ in range(items):
                yield item

        def CompleteActivityTask(self, req: Any, context: Any) -> Any:
            return pb.CompleteTaskResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    stubs.add_TaskHubSidecarServiceServicer_to_server(Servicer(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
    response = pb.ActivityResponse(instanceId=request.orchestrationInstance.instanceId, taskId=1)
    response.result.value = "2"
    try:
        await stub.CompleteActivityTask(response)  # connect first
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        async for received in stub.GetWorkItems(pb.GetWorkItemsRequest()):
            response.completionToken = received.completionToken
            await stub.CompleteActivityTask(response)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await channel.close()
        server.stop(0)
    return ((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)) / items


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m devhost.profile_work_items", description=__doc__)
    parser.add_argument("--orchestrations", type=int, default=100)
    parser.add_argument("--activities", type=int, default=3)
    parser.add_argument("--top", type=int, default=15, help="also list the N most expensive functions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        items, wall, cpu = asyncio.run(
            workload(Path(folder) / "plain.db", args.orchestrations, args.activities)
        )
    print(f"plain run: {items} work items in {wall:.2f} s wall, {cpu:.2f} s process CPU")
    print(f"  {cpu / items * 1e3:.2f} ms CPU per work item, {items / wall:.0f} work items/s")
    alone = asyncio.run(grpc_alone(2000))
    print(
        f"loopback gRPC alone (one streamed work item + one unary completion): {alone * 1e3:.2f} ms CPU "
        f"per work item = {alone / (cpu / items):.0%} of the plain run's"
    )

    yappi: Any = importlib.import_module("yappi")  # installed by hand for this script
    yappi.set_clock_type("cpu")
    yappi.start(builtins=True, profile_threads=True)
    with tempfile.TemporaryDirectory() as folder:
        items, wall, cpu = asyncio.run(
            workload(Path(folder) / "profiled.db", args.orchestrations, args.activities)
        )
    yappi.stop()
    logging.getLogger("durabletask.client").setLevel(logging.WARNING)
    stats = yappi.get_func_stats()
    totals = categorize(stats)
    seen = sum(stat.tsub for stat in stats)
    print(f"profiled run: {cpu:.2f} s process CPU, {seen:.2f} s seen in Python threads by yappi")
    print(f"  ({max(cpu - seen, 0.0):.2f} s outside Python threads: gRPC C-core and SQLite I/O threads)")
    unattributed = seen - sum(totals.values())
    if unattributed > 0:
        totals["builtins called from the event loop itself"] = unattributed
    for category, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {category:34s} {seconds / seen:6.1%}  {seconds / items * 1e3:6.2f} ms/item (profiled)")
    print(f"top {args.top} functions by own CPU:")
    for stat in sorted(stats, key=lambda s: -s.tsub)[: args.top]:
        print(f"  {stat.tsub / seen:6.1%}  {stat.ncall:8d}  {stat.name}  ({stat.module})")


if __name__ == "__main__":
    main()
