"""The `sweep_threads` activity: the maintenance pass, outside the orchestration's replay.

A thin adapter over agent.maintenance.sweep, which takes the durable client, the settings
and the time explicitly. It reads settings here (activities may; orchestrations may not),
so a changed MAINTENANCE_INTERVAL_SECONDS or THREAD_RETENTION_DAYS applies at the next pass.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df

from agent.contract import SWEEP_ACTIVITY
from agent.maintenance import sweep
from agent.settings import get_settings

bp = df.Blueprint()


@bp.function_name(SWEEP_ACTIVITY)
@bp.activity_trigger(input_name="request", activity=SWEEP_ACTIVITY)
@bp.durable_client_input(client_name="client")
async def sweep_threads(request: dict, client: df.DurableFunctionsClient) -> dict:  # type: ignore[type-arg]
    result: dict[str, Any] = (await sweep(client, get_settings(), datetime.now(UTC))).to_dict()
    return result
