"""The `history` entity: one per thread (key = thread id), holding every message.

A thin adapter: each operation decodes its input, applies a pure function from
agent.history, stores the new state and returns a JSON-ready result. Unknown operations
and bad inputs raise, which fails only that operation (the caller sees the error).
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df
from durabletask.entities import EntityContext

from agent import history
from agent.errors import InvalidInputError

ENTITY_NAME = "history"

bp = df.Blueprint()


def _int(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"'{name}' must be an integer")
    return value


def apply_operation(
    state: history.HistoryState, operation: str, arg: Any
) -> tuple[history.HistoryState | None, Any]:
    """Run one entity operation; returns (new state or None to delete, result)."""
    args: dict[str, Any] = arg if isinstance(arg, dict) else {}
    match operation:
        case "init":
            new = history.init(
                state,
                system_prompt=str(args.get("system_prompt") or ""),
                metadata=args.get("metadata") or {},
                created_at=str(args.get("created_at")),
            )
            return new, {"last_seq": new.last_seq}
        case "append":
            new, result = history.append(state, args)
            return new, result.to_dict()
        case "get":
            page = history.page(
                state, after=_int(args.get("after"), "after", 0), limit=_int(args.get("limit"), "limit", 50)
            )
            return state, page
        case "window":
            budget = _int(args.get("budget_bytes"), "budget_bytes", 48_000)
            return state, [m.__dict__ for m in history.window(state, budget_bytes=budget)]
        case "delete":
            return None, None
        case _:
            raise InvalidInputError(f"history entity has no operation {operation!r}")


@bp.entity_trigger(context_name="context", entity_name=ENTITY_NAME)
def history_entity(context: EntityContext, operation_input: Any) -> Any:
    state = history.HistoryState.from_dict(context.get_state(dict))
    new_state, result = apply_operation(state, context.operation.lower(), operation_input)
    if new_state is None:
        context.set_state(None)
    elif new_state is not state:
        context.set_state(new_state.to_dict())
    return result
