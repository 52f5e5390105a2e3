"""A thread's storage entities: its root, history pages, large-entry blobs, message index.

Thin adapters: each operation decodes its input, applies a rule from agent.storage_rules,
stores the new state and returns a JSON-ready result. `delete` removes the entity (its
state becomes null, and the backend forgets it). Unknown operations and bad inputs raise,
which fails only that operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.durable_functions as df
from durabletask.entities import EntityContext

from agent import storage_rules
from agent.contract import BLOB_ENTITY, KEY_SEPARATOR, MESSAGE_ENTITY, PAGE_ENTITY, THREAD_ENTITY
from agent.errors import InvalidInputError

bp = df.Blueprint()


def _unknown(entity: str, operation: str) -> InvalidInputError:
    return InvalidInputError(f"the {entity} entity has no operation {operation!r}")


def _page_number(context: EntityContext) -> int:
    suffix = context.entity_id.key.rsplit(KEY_SEPARATOR, 1)[-1]
    if not suffix.isdigit():
        raise InvalidInputError(f"history page key {context.entity_id.key!r} does not end in a page number")
    return int(suffix)


Rule = Callable[[Any, Any], tuple[Any, Any]]


def _run(context: EntityContext, entity: str, rules: dict[str, Rule], operation_input: Any) -> Any:
    """Apply one operation: `get` returns the state, `delete` removes the entity, any other
    goes through its rule (new state, result)."""
    operation = context.operation.lower()
    if operation == "get":
        return context.get_state()
    if operation == "delete":
        context.set_state(None)
        return None
    rule = rules.get(operation)
    if rule is None:
        raise _unknown(entity, operation)
    state, result = rule(context.get_state(), operation_input)
    context.set_state(state)
    return result


@bp.entity_trigger(context_name="context", entity_name=THREAD_ENTITY)
def thread_root(context: EntityContext, operation_input: Any) -> Any:
    rules: dict[str, Rule] = {
        "init": lambda state, arg: (storage_rules.root_init(state, arg), None),
        "add_note": storage_rules.root_add_note,
    }
    return _run(context, THREAD_ENTITY, rules, operation_input)


@bp.entity_trigger(context_name="context", entity_name=PAGE_ENTITY)
def history_page(context: EntityContext, operation_input: Any) -> Any:
    def append(state: Any, arg: Any) -> tuple[Any, Any]:
        return storage_rules.page_append(state, _page_number(context), arg), None

    return _run(context, PAGE_ENTITY, {"append": append}, operation_input)


@bp.entity_trigger(context_name="context", entity_name=BLOB_ENTITY)
def history_blob(context: EntityContext, operation_input: Any) -> Any:
    rules: dict[str, Rule] = {"put": lambda state, arg: (storage_rules.blob_put(state, arg), None)}
    return _run(context, BLOB_ENTITY, rules, operation_input)


@bp.entity_trigger(context_name="context", entity_name=MESSAGE_ENTITY)
def message_index(context: EntityContext, operation_input: Any) -> Any:
    rules: dict[str, Rule] = {"put": lambda state, arg: (storage_rules.message_put(state, arg), None)}
    return _run(context, MESSAGE_ENTITY, rules, operation_input)
