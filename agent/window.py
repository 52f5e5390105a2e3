"""The context window: the newest conversation entries that fit the model request's budget.

A thread's orchestration keeps its window in its own state and extends it every turn. An
orchestration step replays every turn of its generation, so extending must cost what the
turn adds, not what the window holds: `ContextWindow` carries each entry's chat message and
byte cost along with the entry, and `extend` only measures the new entries and drops whole
groups from the front.

The rules: failed turns (entries with `error`) and the system entry are never sent; an
assistant entry with tool calls and the tool entries answering it form one group, kept or
dropped together (the model rejects a result without its call), and a tool entry whose call
is gone is never sent alone; the newest group is always kept, even when it alone is over
budget (the model must see what it is answering).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.errors import InvalidInputError
from agent.model import ChatMessage
from agent.payload import encoded_size


def model_message(entry: Mapping[str, Any]) -> ChatMessage:
    return ChatMessage(
        role=str(entry["role"]),
        content=str(entry.get("content") or ""),
        tool_calls=tuple(entry.get("tool_calls") or ()),
        tool_call_id=entry.get("tool_call_id"),
    )


def window_cost(entry: Mapping[str, Any]) -> int:
    """Bytes an entry adds to the model request."""
    if entry.get("tool_calls"):
        return encoded_size(model_message(entry).to_dict())
    return _plain_message_cost(str(entry["role"]), str(entry.get("content") or ""), entry.get("tool_call_id"))


@functools.lru_cache(maxsize=4096)
def _plain_message_cost(role: str, content: str, tool_call_id: str | None) -> int:
    # Each step rebuilds the window from the orchestration's input: the same entries are
    # measured again at every step of a generation.
    return encoded_size(ChatMessage(role=role, content=content, tool_call_id=tool_call_id).to_dict())


@dataclass(frozen=True)
class ContextWindow:
    """Window entries oldest first, with their chat messages and costs (derived, not compared)."""

    entries: tuple[dict[str, Any], ...] = ()
    messages: tuple[ChatMessage, ...] = field(default=(), compare=False, repr=False)
    costs: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @property
    def cost(self) -> int:
        return sum(self.costs)

    @classmethod
    def of(cls, entries: Iterable[Mapping[str, Any]], budget_bytes: int) -> ContextWindow:
        """The newest groups of `entries` that fit `budget_bytes`."""
        return cls().extend(entries, budget_bytes)

    def extend(self, new_entries: Iterable[Mapping[str, Any]], budget_bytes: int) -> ContextWindow:
        """This window with `new_entries` appended and the oldest groups dropped to fit."""
        if budget_bytes < 1:
            raise InvalidInputError("the context window budget must be positive")
        entries = list(self.entries)
        messages = list(self.messages)
        costs = list(self.costs)
        total = sum(costs)
        for raw in new_entries:
            role = raw.get("role")
            if "error" in raw or role == "system":
                continue
            if role == "tool" and not _ends_in_a_call(entries):
                continue  # an orphaned result (its call was trimmed away earlier): never sent alone
            entry = dict(raw)
            cost = window_cost(entry)
            entries.append(entry)
            messages.append(model_message(entry))
            costs.append(cost)
            total += cost
        start = 0
        while total > budget_bytes:
            end = start + 1
            while end < len(entries) and entries[end].get("role") == "tool":
                end += 1
            if end >= len(entries):
                break  # the newest group stays, over budget or not
            total -= sum(costs[start:end])
            start = end
        return ContextWindow(tuple(entries[start:]), tuple(messages[start:]), tuple(costs[start:]))

    def model_messages(self, system_prompt: str) -> list[ChatMessage]:
        """What the model is sent: the system prompt, then the window."""
        system = [ChatMessage(role="system", content=system_prompt)] if system_prompt else []
        return [*system, *self.messages]


def _ends_in_a_call(entries: Sequence[Mapping[str, Any]]) -> bool:
    """True when the last group's head is an assistant entry with tool calls."""
    index = len(entries) - 1
    while index >= 0 and entries[index].get("role") == "tool":
        index -= 1
    return index >= 0 and bool(entries[index].get("tool_calls"))


def trim_window(entries: Sequence[Mapping[str, Any]], budget_bytes: int) -> tuple[dict[str, Any], ...]:
    """The newest groups of `entries` that fit `budget_bytes`, oldest dropped first."""
    return ContextWindow.of(entries, budget_bytes).entries
