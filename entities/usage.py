"""The `caller` entity: what one caller uses, for the per-caller limits (agent.limits).

Keyed by a digest of the caller (principal or address), never the caller itself. A thin
adapter over agent.limits.apply_usage.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df
from durabletask.entities import EntityContext

from agent.contract import CALLER_ENTITY
from agent.errors import InvalidInputError
from agent.limits import apply_usage

bp = df.Blueprint()


@bp.entity_trigger(context_name="context", entity_name=CALLER_ENTITY)
def caller_usage(context: EntityContext, operation_input: Any) -> Any:
    operation = context.operation.lower()
    if operation == "get":
        return context.get_state()
    if operation not in ("thread_created", "thread_deleted", "tokens"):
        raise InvalidInputError(f"the {CALLER_ENTITY} entity has no operation {operation!r}")
    context.set_state(apply_usage(context.get_state(), operation, operation_input))
    return None
