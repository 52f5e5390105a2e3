"""A thread's storage entities: its root, history pages, large-entry blobs, message index.

Thin adapters: each operation decodes its input, applies a rule from agent.storage_rules,
stores the new state and returns a JSON-ready result. `delete` removes the entity (its
state becomes null, and the backend forgets it). Unknown operations and bad inputs raise,
which fails only that operation.
"""

from __future__ import annotations

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


@bp.entity_trigger(context_name="context", entity_name=THREAD_ENTITY)
def thread_root(context: EntityContext, operation_input: Any) -> Any:
    state = context.get_state()
    match context.operation.lower():
        case "init":
            context.set_state(storage_rules.root_init(state, operation_input))
            return None
        case "add_note":
            new, result = storage_rules.root_add_note(state, operation_input)
            context.set_state(new)
            return result
        case "get":
            return state
        case "delete":
            context.set_state(None)
            return None
        case other:
            raise _unknown(THREAD_ENTITY, other)


@bp.entity_trigger(context_name="context", entity_name=PAGE_ENTITY)
def history_page(context: EntityContext, operation_input: Any) -> Any:
    match context.operation.lower():
        case "append":
            new = storage_rules.page_append(context.get_state(), _page_number(context), operation_input)
            context.set_state(new)
            return None
        case "get":
            return context.get_state()
        case "delete":
            context.set_state(None)
            return None
        case other:
            raise _unknown(PAGE_ENTITY, other)


@bp.entity_trigger(context_name="context", entity_name=BLOB_ENTITY)
def history_blob(context: EntityContext, operation_input: Any) -> Any:
    match context.operation.lower():
        case "put":
            context.set_state(storage_rules.blob_put(context.get_state(), operation_input))
            return None
        case "get":
            return context.get_state()
        case "delete":
            context.set_state(None)
            return None
        case other:
            raise _unknown(BLOB_ENTITY, other)


@bp.entity_trigger(context_name="context", entity_name=MESSAGE_ENTITY)
def message_index(context: EntityContext, operation_input: Any) -> Any:
    match context.operation.lower():
        case "put":
            context.set_state(storage_rules.message_put(context.get_state(), operation_input))
            return None
        case "get":
            return context.get_state()
        case "delete":
            context.set_state(None)
            return None
        case other:
            raise _unknown(MESSAGE_ENTITY, other)
