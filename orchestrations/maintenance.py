"""The `maintenance` orchestration: one eternal instance per task hub that sweeps on a timer.

Each generation runs the `sweep_threads` activity (orphaned storage, retention), sleeps on
a durable timer for the interval the sweep returns, and continues as new, so its history
stays one generation long. Its custom status shows the last pass (when, and how many
threads it deleted; counts only, never ids). The HTTP API starts it on first use (instance
id `durable-agent-maintenance`).
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
from durabletask import task

from agent.contract import MAINTENANCE_ORCHESTRATION, SWEEP_ACTIVITY
from agent.thread import utc_text

bp = df.Blueprint()
DEFAULT_INTERVAL_SECONDS = 3600.0


def run_maintenance(ctx: task.OrchestrationContext, _: Any) -> Generator[task.Task[Any], Any]:
    try:
        result = yield ctx.call_activity(SWEEP_ACTIVITY, input={})
        interval = float(result.get("next_sweep_seconds") or DEFAULT_INTERVAL_SECONDS)
        status: dict[str, Any] = {**result, "failed": False}
    except task.TaskFailedError:
        interval = DEFAULT_INTERVAL_SECONDS  # a failed pass is tried again at the next one
        status = {"failed": True, "next_sweep_seconds": interval}
    ctx.set_custom_status({**status, "swept_at": utc_text(ctx.current_utc_datetime)})
    yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=interval))
    ctx.continue_as_new({})


@bp.orchestration_trigger(context_name="context", orchestration=MAINTENANCE_ORCHESTRATION)
def maintenance(context: task.OrchestrationContext, _input: Any) -> Generator[task.Task[Any], Any]:
    yield from run_maintenance(context, _input)
