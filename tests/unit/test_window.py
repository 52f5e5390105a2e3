"""The context window: what is kept, what goes together, and that extending it turn by turn
gives exactly what trimming the whole conversation gives."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from agent.errors import InvalidInputError
from agent.window import ContextWindow, model_message, trim_window, window_cost

T0 = "2026-01-01T00:00:00.000Z"


def entry(seq: int, role: str = "user", content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "id": f"e{seq}", "role": role, "content": content, "created_at": T0} | extra


def reference_trim(entries: Sequence[Mapping[str, Any]], budget: int) -> list[int]:
    """The rules written out the slow, obvious way: group everything, then keep the newest
    groups while they fit (the newest always)."""
    groups: list[list[Mapping[str, Any]]] = []
    for e in entries:
        if "error" in e or e["role"] == "system":
            continue
        if e["role"] == "tool":
            if groups and groups[-1][0].get("tool_calls"):
                groups[-1].append(e)
            continue
        groups.append([e])
    kept: list[list[Mapping[str, Any]]] = []
    remaining = budget
    for group in reversed(groups):
        cost = sum(window_cost(e) for e in group)
        if kept and cost > remaining:
            break
        kept.append(group)
        remaining -= cost
    return [int(e["seq"]) for group in reversed(kept) for e in group]


def test_the_window_keeps_the_newest_entries_that_fit_and_never_sends_errors() -> None:
    entries = [
        entry(1, "system", "be brief"),
        entry(2, content="a" * 100),
        entry(3, "assistant", "b" * 100),
        entry(4, content="failed"),
        entry(5, "assistant", "", error={"code": "x"}),
        entry(6, content="c" * 100),
    ]
    cost = window_cost(entries[1])
    assert [e["seq"] for e in trim_window(entries, budget_bytes=3 * cost)] == [3, 4, 6]
    assert [e["seq"] for e in trim_window(entries, budget_bytes=1)] == [6]  # newest always kept


def test_the_window_keeps_tool_calls_with_their_results_or_drops_them_together() -> None:
    call = entry(3, "assistant", "", tool_calls=[{"id": "c1", "name": "t", "arguments": "{}"}])
    result = entry(4, "tool", "x" * 200, tool_call_id="c1")
    entries = [entry(2, content="q"), call, result, entry(5, "assistant", "done")]
    assert [e["seq"] for e in trim_window(entries, budget_bytes=10_000)] == [2, 3, 4, 5]
    group_cost = window_cost(call) + window_cost(result)
    tight = trim_window(entries, budget_bytes=window_cost(entries[3]) + group_cost - 1)
    assert [e["seq"] for e in tight] == [5]  # the call and its result went together
    orphan = trim_window([result, entry(5, "assistant", "done")], budget_bytes=10_000)
    assert [e["seq"] for e in orphan] == [5]  # a result whose call is gone is never sent


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(InvalidInputError, match="budget"):
        ContextWindow().extend([entry(1)], 0)


def test_model_messages_put_the_system_prompt_first() -> None:
    messages = ContextWindow.of([entry(2), entry(3, "assistant", "r")], 10_000).model_messages("S")
    assert [(m.role, m.content) for m in messages] == [("system", "S"), ("user", "hi"), ("assistant", "r")]
    assert [m.role for m in ContextWindow.of([entry(2)], 10_000).model_messages("")] == ["user"]


def test_messages_and_costs_follow_the_entries() -> None:
    call = entry(3, "assistant", "", tool_calls=[{"id": "c1", "name": "t", "arguments": "{}"}])
    window = ContextWindow.of([entry(2, content="q"), call, entry(4, "tool", "r", tool_call_id="c1")], 10_000)
    assert [m.role for m in window.messages] == ["user", "assistant", "tool"]
    assert window.messages[1].tool_calls == ({"id": "c1", "name": "t", "arguments": "{}"},)
    assert window.messages[2].tool_call_id == "c1"
    assert window.cost == sum(window_cost(e) for e in window.entries)


def random_turn(rng: random.Random, seq: int) -> list[dict[str, Any]]:
    """One turn's entries: a user message, maybe rounds of tool calls, then a reply or an error."""
    turn = [entry(seq, content="u" * rng.randint(1, 300))]
    for _ in range(rng.choice([0, 0, 1, 2])):
        seq += 1
        call_ids = [f"c{seq}-{n}" for n in range(rng.randint(1, 3))]
        turn.append(
            entry(
                seq, "assistant", "", tool_calls=[{"id": c, "name": "t", "arguments": "{}"} for c in call_ids]
            )
        )
        for call_id in call_ids:
            seq += 1
            turn.append(entry(seq, "tool", "r" * rng.randint(1, 400), tool_call_id=call_id))
    seq += 1
    if rng.random() < 0.15:
        turn.append(entry(seq, "assistant", "", error={"code": "model_error"}))
    else:
        turn.append(entry(seq, "assistant", "a" * rng.randint(1, 300)))
    return turn


@pytest.mark.parametrize("seed", range(40))
def test_extending_turn_by_turn_equals_trimming_the_whole_conversation(seed: int) -> None:
    rng = random.Random(seed)
    budget = rng.choice([1, 200, 800, 2_000, 6_000])
    conversation: list[dict[str, Any]] = []
    window = ContextWindow()
    for _ in range(40):
        turn = random_turn(rng, len(conversation) + 2)
        # The orchestration extends in pieces: the user entry, each round, then the reply.
        cut = rng.randint(0, len(turn))
        window = window.extend(turn[:cut], budget).extend(turn[cut:], budget)
        conversation += turn
        assert [e["seq"] for e in window.entries] == reference_trim(conversation, budget)
        assert window.cost == sum(window_cost(e) for e in window.entries)
        assert window == ContextWindow.of(window.entries, budget)  # a restored window is the same


CALL = {"id": "c1", "type": "function", "function": {"name": "book", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        (entry(1, "user", "hi"), {"role": "user", "content": "hi"}),
        (entry(2, "assistant", ""), {"role": "assistant", "content": ""}),
        (
            entry(3, "assistant", tool_calls=[CALL]) | {"content": None},
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
        ),
        (entry(4, "tool", "ok", tool_call_id="c1"), {"role": "tool", "content": "ok", "tool_call_id": "c1"}),
    ],
)
def test_an_entry_costs_the_bytes_of_the_message_the_model_is_sent(
    stored: dict[str, Any], sent: dict[str, Any]
) -> None:
    assert window_cost(stored) == len(json.dumps(sent))
    assert model_message(stored).to_dict() == sent


def test_the_budget_message_says_what_is_wrong() -> None:
    with pytest.raises(InvalidInputError, match=r"^the context window budget must be positive$"):
        ContextWindow().extend([entry(1)], -1)


def test_a_window_exactly_at_its_budget_keeps_everything_and_skips_system_entries() -> None:
    entries = [entry(1, "system", "S"), entry(2, "user", "a"), entry(3, "assistant", "b")]
    exact = window_cost(entries[1]) + window_cost(entries[2])
    assert [e["seq"] for e in ContextWindow.of(entries, exact).entries] == [2, 3]
    assert [e["seq"] for e in ContextWindow.of(entries, exact - 1).entries] == [3]
