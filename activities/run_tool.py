"""The `run_tool` activity: one tool call, outside the orchestration's replay.

Tools read clocks, signal entities and may do I/O, so they run here and never in the
orchestration. A thin adapter: it decodes the `ToolRequest`, hands the durable client to
the tools through a `ToolContext`, and returns `tools.runner.run_tool`'s `ToolResult`.
Problems with the call itself come back as error results for the model; only a malformed
input raises (InvalidInputError).
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from agent.contract import RUN_TOOL_ACTIVITY
from tools import REGISTRY, ToolContext
from tools.runner import ToolRequest, run_tool

ACTIVITY_NAME = RUN_TOOL_ACTIVITY

bp = df.Blueprint()


# Plain `dict` annotations for the worker's indexer: the input is ToolRequest.to_dict(),
# the output ToolResult.to_dict().
@bp.function_name(ACTIVITY_NAME)
@bp.activity_trigger(input_name="request", activity=ACTIVITY_NAME)
@bp.durable_client_input(client_name="client")
async def run_tool_trigger(request: dict, client: df.DurableFunctionsClient) -> dict:  # type: ignore[type-arg]
    parsed = ToolRequest.from_dict(request)
    context = ToolContext(thread_id=parsed.thread_id, call_id=parsed.call.id, client=client)
    result: dict[str, Any] = (await run_tool(parsed, REGISTRY, context)).to_dict()
    return result
