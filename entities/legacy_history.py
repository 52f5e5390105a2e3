"""The legacy `history` entity: a whole thread in one state blob (before paged storage).

Threads created before paged history keep this entity until their orchestration migrates
them (on their next message, see orchestrations/legacy.py). The old operations stay so an
in-flight turn of an old generation replays exactly; `export` hands the entries out in
bounded chunks for the migration. The rules live in agent.legacy_history.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df
from durabletask.entities import EntityContext

from agent import legacy_history as history
from agent.contract import LEGACY_HISTORY_ENTITY
from agent.errors import InvalidInputError

ENTITY_NAME = LEGACY_HISTORY_ENTITY
EXPORT_MAX_BYTES = 96 * 1024

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
            chosen = history.window(state, budget_bytes=budget)
            return state, [{"role": m.role, "content": m.content} for m in chosen]
        case "export":
            return state, history.export(
                state,
                after=_int(args.get("after"), "after", 0),
                max_bytes=_int(args.get("max_bytes"), "max_bytes", EXPORT_MAX_BYTES),
            )
        case "delete":
            return None, None
        case _:
            raise InvalidInputError(f"history entity has no operation {operation!r}")


@bp.entity_trigger(context_name="context", entity_name=ENTITY_NAME)
def legacy_history_entity(context: EntityContext, operation_input: Any) -> Any:
    state = history.HistoryState.from_dict(context.get_state(dict))
    new_state, result = apply_operation(state, context.operation.lower(), operation_input)
    if new_state is None:
        context.set_state(None)
    elif new_state is not state:
        context.set_state(new_state.to_dict())
    return result
