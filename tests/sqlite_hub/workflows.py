"""Orchestrators, activities and entities used by the task hub tests.

They are registered on every test worker (a worker's registry is fixed once started),
and are deterministic so the same scenario gives the same result on both backends.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from datetime import timedelta
from typing import Any

from durabletask import task
from durabletask.entities import EntityInstanceId
from durabletask.entities.entity_context import EntityContext
from durabletask.worker import TaskHubGrpcWorker

Gen = Generator[Any, Any, Any]

_flaky_lock = threading.Lock()
_flaky_failures: dict[str, int] = {}
_fail_switch: set[str] = set()


def set_flaky(key: str, failures: int) -> None:
    """Makes ``flaky(key)`` fail ``failures`` more times before it succeeds."""
    with _flaky_lock:
        _flaky_failures[key] = failures


def set_failing(key: str, failing: bool) -> None:
    with _flaky_lock:
        if failing:
            _fail_switch.add(key)
        else:
            _fail_switch.discard(key)


# -- activities ------------------------------------------------------------------------


def double(ctx: task.ActivityContext, x: int) -> int:
    return x * 2


def fail_activity(ctx: task.ActivityContext, message: str) -> None:
    raise RuntimeError(message)


def flaky(ctx: task.ActivityContext, key: str) -> str:
    with _flaky_lock:
        left = _flaky_failures.get(key, 0)
        if left > 0:
            _flaky_failures[key] = left - 1
            raise RuntimeError(f"flaky {key} failed")
        if key in _fail_switch:
            raise RuntimeError(f"switch {key} is failing")
    return f"ok:{key}"


# -- orchestrators ---------------------------------------------------------------------


def seq_orch(ctx: task.OrchestrationContext, n: int) -> Gen:
    results = []
    for i in range(n):
        results.append((yield ctx.call_activity(double, input=i)))
    return results


def fan_orch(ctx: task.OrchestrationContext, n: int) -> Gen:
    results = yield task.when_all([ctx.call_activity(double, input=i) for i in range(n)])
    return sum(results)


def failing_orch(ctx: task.OrchestrationContext, message: str) -> Gen:
    yield ctx.call_activity(fail_activity, input=message)
    return "unreachable"


def retry_orch(ctx: task.OrchestrationContext, key: str) -> Gen:
    policy = task.RetryPolicy(first_retry_interval=timedelta(seconds=0.1), max_number_of_attempts=3)
    return (yield ctx.call_activity(flaky, input=key, retry_policy=policy))


def flaky_orch(ctx: task.OrchestrationContext, key: str) -> Gen:
    first = yield ctx.call_activity(double, input=1)
    second = yield ctx.call_activity(flaky, input=key)
    return [first, second]


def child_orch(ctx: task.OrchestrationContext, x: int) -> Gen:
    return (yield ctx.call_activity(double, input=x))


def parent_orch(ctx: task.OrchestrationContext, x: int) -> Gen:
    child = yield ctx.call_sub_orchestrator(child_orch, input=x, instance_id=f"{ctx.instance_id}-child")
    return child + 1


def failing_parent(ctx: task.OrchestrationContext, message: str) -> Gen:
    try:
        yield ctx.call_sub_orchestrator(failing_orch, input=message, instance_id=f"{ctx.instance_id}-child")
    except task.TaskFailedError as exc:
        return f"caught: {exc.details.message}"
    return "not caught"


def flaky_parent(ctx: task.OrchestrationContext, key: str) -> Gen:
    return (yield ctx.call_sub_orchestrator(flaky_orch, input=key, instance_id=f"{ctx.instance_id}-child"))


def timer_orch(ctx: task.OrchestrationContext, seconds: float) -> Gen:
    start = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - start).total_seconds()


def event_orch(ctx: task.OrchestrationContext, names: list[str]) -> Gen:
    received = []
    for name in names:
        received.append((yield ctx.wait_for_external_event(name)))
    return received


def event_or_timeout(ctx: task.OrchestrationContext, seconds: float) -> Gen:
    event = ctx.wait_for_external_event("approve")
    timer = ctx.create_timer(timedelta(seconds=seconds))
    winner = yield task.when_any([event, timer])
    return "approved" if winner == event else "timed out"


def can_orch(ctx: task.OrchestrationContext, state: dict[str, int]) -> Gen:
    yield ctx.call_activity(double, input=state["count"])
    if state["count"] < state["limit"]:
        ctx.continue_as_new({"count": state["count"] + 1, "limit": state["limit"]})
        return None
    return state["count"]


def can_events_orch(ctx: task.OrchestrationContext, state: dict[str, Any]) -> Gen:
    value = yield ctx.wait_for_external_event("add")
    acc = [*state["acc"], value]
    if len(acc) < state["limit"]:
        ctx.continue_as_new({"acc": acc, "limit": state["limit"]}, save_events=True)
        return None
    return acc


def custom_status_orch(ctx: task.OrchestrationContext, _: Any) -> Gen:
    ctx.set_custom_status({"stage": 1})
    yield ctx.wait_for_external_event("next")
    ctx.set_custom_status({"stage": 2})
    return "done"


def wait_forever(ctx: task.OrchestrationContext, _: Any) -> Gen:
    return (yield ctx.wait_for_external_event("never"))


def parent_waiting(ctx: task.OrchestrationContext, _: Any) -> Gen:
    return (yield ctx.call_sub_orchestrator(wait_forever, instance_id=f"{ctx.instance_id}-child"))


def sender_orch(ctx: task.OrchestrationContext, target: str) -> Gen:
    ctx.send_event(target, "ping", data="from-sender")
    yield ctx.call_activity(double, input=0)
    return "sent"


def entity_orch(ctx: task.OrchestrationContext, key: str) -> Gen:
    eid = EntityInstanceId("counter", key)
    yield ctx.call_entity(eid, "add", 5)
    ctx.signal_entity(eid, "add", 10)
    yield ctx.call_entity(eid, "add", 1)
    return (yield ctx.call_entity(eid, "get"))


def lock_orch(ctx: task.OrchestrationContext, keys: list[str]) -> Gen:
    ids = [EntityInstanceId("counter", k) for k in keys]
    values = []
    with (yield ctx.lock_entities(ids)):
        for eid in ids:
            current = yield ctx.call_entity(eid, "get")
            yield ctx.call_entity(eid, "set", current + 1)
            values.append((yield ctx.call_entity(eid, "get")))
    return values


def lock_only_orch(ctx: task.OrchestrationContext, key: str) -> Gen:
    """Locks an entity and releases it without calling it (it never gets state)."""
    with (yield ctx.lock_entities([EntityInstanceId("counter", key)])):
        pass
    return "ok"


def delayed_signal_orch(ctx: task.OrchestrationContext, key: str) -> Gen:
    at = ctx.current_utc_datetime + timedelta(seconds=1)
    ctx.signal_entity(EntityInstanceId("counter", key), "add", 3, signal_time=at)
    yield ctx.call_activity(double, input=0)
    return at.timestamp()


def entity_error_orch(ctx: task.OrchestrationContext, key: str) -> Gen:
    try:
        yield ctx.call_entity(EntityInstanceId("counter", key), "boom")
    except task.TaskFailedError as exc:
        return f"caught: {exc.details.message}"
    return "not caught"


# -- entities --------------------------------------------------------------------------


def counter(ctx: EntityContext, value: Any) -> Any:
    state = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(state + int(value))
    elif ctx.operation == "set":
        ctx.set_state(int(value))
    elif ctx.operation == "delete":
        ctx.set_state(None)
    elif ctx.operation == "boom":
        raise ValueError("counter exploded")
    return ctx.get_state(int, 0)


def relay(ctx: EntityContext, value: Any) -> None:
    if ctx.operation == "forward":
        ctx.signal_entity(EntityInstanceId("counter", value["key"]), "add", value["amount"])
    elif ctx.operation == "start":
        ctx.schedule_new_orchestration("child_orch", input=value["x"], instance_id=value["instance_id"])


ORCHESTRATORS: list[Any] = [
    seq_orch,
    fan_orch,
    failing_orch,
    retry_orch,
    flaky_orch,
    child_orch,
    parent_orch,
    failing_parent,
    flaky_parent,
    timer_orch,
    event_orch,
    event_or_timeout,
    can_orch,
    can_events_orch,
    custom_status_orch,
    wait_forever,
    parent_waiting,
    sender_orch,
    entity_orch,
    lock_orch,
    lock_only_orch,
    entity_error_orch,
    delayed_signal_orch,
]
ACTIVITIES: list[Any] = [double, fail_activity, flaky]


def register(worker: TaskHubGrpcWorker) -> None:
    for orchestrator in ORCHESTRATORS:
        worker.add_orchestrator(orchestrator)
    for activity in ACTIVITIES:
        worker.add_activity(activity)
    worker.add_entity(counter)
    worker.add_entity(relay)
