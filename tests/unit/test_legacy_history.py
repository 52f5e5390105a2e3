"""The legacy single-blob history entity's pure state transitions (threads before paging)."""

from __future__ import annotations

import json

import pytest

from agent import legacy_history as history
from agent.errors import InvalidInputError
from entities.legacy_history import apply_operation

T0 = "2026-01-01T00:00:00.000Z"


def entry(entry_id: str, role: str = "user", content: str = "hi", **extra: object) -> dict[str, object]:
    return {"id": entry_id, "role": role, "content": content, "created_at": T0, **extra}


def build(*entries: dict[str, object]) -> history.HistoryState:
    state = history.HistoryState()
    for e in entries:
        state, _ = history.append(state, e)
    return state


def test_append_assigns_consecutive_seq_from_one() -> None:
    state = build(entry("a"), entry("b", "assistant"), entry("c"))
    assert [e["seq"] for e in state.entries] == [1, 2, 3]
    assert state.last_seq == 3


def test_append_same_id_twice_is_a_duplicate_and_changes_nothing() -> None:
    state = build(entry("a"), entry("b"))
    again, result = history.append(state, entry("a", content="different"))
    assert result == history.AppendResult(seq=1, duplicate=True)
    assert again is state


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"role": "user", "content": "x", "created_at": T0}, "history entry needs a non-empty string 'id'"),
        (
            {"id": "", "role": "user", "content": "x", "created_at": T0},
            "history entry needs a non-empty string",
        ),
        ({"id": "a", "role": "robot", "content": "x", "created_at": T0}, "history entry role must be one of"),
        (
            {"id": "a", "role": "user", "content": 5, "created_at": T0},
            "history entry 'content' must be a string",
        ),
        (
            {"id": "a", "role": "user", "content": "x"},
            "history entry needs 'created_at' as an ISO 8601 string",
        ),
    ],
)
def test_append_rejects_malformed_entries(bad: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        history.append(history.HistoryState(), bad)
    assert str(refused.value).startswith(message)


def test_append_keeps_reply_fields_and_drops_unknown_ones() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    state = build(entry("r", "assistant", reply_to="m", model="gpt", usage=usage, latency_ms=7, bogus=1))
    stored = state.entries[0]
    assert stored["usage"] == usage and stored["model"] == "gpt" and stored["reply_to"] == "m"
    assert "bogus" not in stored


def test_init_adds_system_prompt_once() -> None:
    state = history.init(history.HistoryState(), system_prompt="Be brief.", metadata={"k": 1}, created_at=T0)
    assert [(e["role"], e["content"]) for e in state.entries] == [("system", "Be brief.")]
    assert state.metadata == {"k": 1}
    assert history.init(state, system_prompt="Other", metadata={}, created_at=T0) is state


def test_page_walks_all_entries_without_gaps() -> None:
    state = build(*(entry(f"m{i}") for i in range(7)))
    seen, after = [], 0
    while True:
        page = history.page(state, after=after, limit=3)
        seen += [e["seq"] for e in page["entries"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == list(range(1, 8))


def test_page_after_the_end_is_empty() -> None:
    assert history.page(build(entry("a")), after=5, limit=10) == {"entries": [], "next_after": None}


@pytest.mark.parametrize(
    ("after", "limit", "message"),
    [
        (-1, 10, "^'after' must be 0 or a positive sequence number$"),
        (0, 0, "^'limit' must be between 1 and 200$"),
        (0, history.MAX_PAGE_SIZE + 1, "^'limit' must be between 1 and 200$"),
    ],
)
def test_page_rejects_bad_bounds(after: int, limit: int, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        history.page(build(entry("a")), after=after, limit=limit)


def test_page_limits_are_inclusive_and_default_to_the_first_50() -> None:
    state = build(*(entry(f"m{i}") for i in range(history.MAX_PAGE_SIZE + 1)))
    assert [e["seq"] for e in history.page(state, after=0, limit=1)["entries"]] == [1]
    assert len(history.page(state, after=0, limit=history.MAX_PAGE_SIZE)["entries"]) == history.MAX_PAGE_SIZE
    default = history.page(state)
    assert [e["seq"] for e in default["entries"]] == list(range(1, 51))
    assert default["next_after"] == 50


def test_a_page_that_reaches_the_last_entry_says_nothing_follows() -> None:
    state = build(*(entry(f"m{i}") for i in range(6)))
    assert history.page(state, after=3, limit=3) == {"entries": list(state.entries[3:]), "next_after": None}
    assert history.page(state, after=2, limit=3)["next_after"] == 5


def test_window_keeps_system_prompt_and_drops_oldest_first() -> None:
    state = build(
        entry("s", "system", "S" * 10),
        entry("u1", "user", "a" * 40),
        entry("r1", "assistant", "b" * 40),
        entry("u2", "user", "c" * 40),
    )
    # the budget fits the system prompt plus the two newest messages (role names count too)
    budget = (10 + len("system")) + (40 + len("assistant")) + (40 + len("user"))
    messages = history.window(state, budget_bytes=budget)
    assert [m.role for m in messages] == ["system", "assistant", "user"]
    assert messages[-1].content == "c" * 40
    one_less = history.window(state, budget_bytes=budget - 1)
    assert [m.role for m in one_less] == ["system", "user"]


def test_window_always_includes_the_newest_message_even_if_too_big() -> None:
    state = build(entry("s", "system", "S"), entry("u1", "user", "x" * 1000))
    messages = history.window(state, budget_bytes=10)
    assert [m.role for m in messages] == ["system", "user"]


def test_window_never_sends_failed_turns() -> None:
    error = {"code": "model_rejected", "message": "400", "retryable": False}
    state = build(entry("u1"), entry("e1", "assistant", "", reply_to="u1", error=error), entry("u2"))
    assert [m.content for m in history.window(state, budget_bytes=10_000)] == ["hi", "hi"]
    assert len(history.window(state, budget_bytes=10_000)) == 2


def test_find_reply_matches_user_message_and_its_answer() -> None:
    state = build(entry("u1"), entry("r1", "assistant", "ok", reply_to="u1"), entry("u2"))
    assert history.find_reply(state, "u1")[1] is not None
    message, reply = history.find_reply(state, "u2")
    assert message is not None and reply is None
    assert history.find_reply(state, "nope") == (None, None)


def test_state_round_trips_through_dict() -> None:
    state = history.init(history.HistoryState(), system_prompt="x", metadata={"a": [1]}, created_at=T0)
    assert history.HistoryState.from_dict(state.to_dict()) == state


def test_entity_operations_apply_pure_functions() -> None:
    state, result = apply_operation(
        history.HistoryState(), "init", {"system_prompt": "S", "metadata": {}, "created_at": T0}
    )
    assert result == {"last_seq": 1}
    assert state is not None
    state, result = apply_operation(state, "append", entry("u1"))
    assert result == {"seq": 2, "duplicate": False}
    assert state is not None
    _, window = apply_operation(state, "window", {"budget_bytes": 1000})
    assert window == [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
    _, page = apply_operation(state, "get", {"after": 1, "limit": 5})
    assert [e["id"] for e in page["entries"]] == ["u1"]
    deleted, _ = apply_operation(state, "delete", None)
    assert deleted is None


def test_entity_rejects_unknown_operation_and_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="no operation"):
        apply_operation(history.HistoryState(), "explode", None)
    for operation, argument in (
        ("get", "after"),
        ("get", "limit"),
        ("window", "budget_bytes"),
        ("export", "after"),
        ("export", "max_bytes"),
    ):
        with pytest.raises(InvalidInputError) as refused:
            apply_operation(history.HistoryState(), operation, {argument: "x"})
        assert str(refused.value) == f"'{argument}' must be an integer", operation


def test_export_hands_out_entries_in_bounded_chunks_until_the_end() -> None:
    state = build(*(entry(f"m{i}", content="x" * 100) for i in range(10)))
    seen: list[int] = []
    after = 0
    while True:
        chunk = history.export(state, after=after, max_bytes=450)
        assert chunk["entries"], "every chunk carries at least one entry"
        assert len(chunk["entries"]) <= 3
        seen += [e["seq"] for e in chunk["entries"]]
        if chunk["next_after"] is None:
            break
        after = chunk["next_after"]
    assert seen == list(range(1, 11))


def test_export_of_an_entry_larger_than_the_chunk_still_makes_progress() -> None:
    state = build(entry("big", content="x" * 5000), entry("small"))
    first = history.export(state, after=0, max_bytes=100)
    assert [e["id"] for e in first["entries"]] == ["big"] and first["next_after"] == 1
    assert [e["id"] for e in history.export(state, after=1, max_bytes=100)["entries"]] == ["small"]


def test_the_entity_exports_through_its_operation() -> None:
    state = build(entry("a"), entry("b"))
    same, result = apply_operation(state, "export", {"after": 1})
    assert same is state and [e["id"] for e in result["entries"]] == ["b"]


def test_append_keeps_the_thread_creation_time() -> None:
    state = history.init(history.HistoryState(), system_prompt="", metadata={}, created_at=T0)
    assert state.created_at == T0 and state.entries == ()
    appended, _ = history.append(state, entry("a"))
    assert appended.created_at == T0


def test_init_once_started_even_without_entries_changes_nothing() -> None:
    started = history.init(history.HistoryState(), system_prompt="", metadata={"k": 1}, created_at=T0)
    assert history.init(started, system_prompt="Late", metadata={}, created_at="later") is started


def test_the_system_prompt_entry_has_the_id_system() -> None:
    state = history.init(history.HistoryState(), system_prompt="Be brief.", metadata={}, created_at=T0)
    assert state.entries[0]["id"] == "system" and state.entries[0]["created_at"] == T0


def test_export_fills_the_chunk_up_to_exactly_its_size() -> None:
    state = build(entry("a"), entry("b"), entry("c"))
    size = len(json.dumps(state.entries[0]))
    assert [e["seq"] for e in history.export(state, after=0, max_bytes=2 * size)["entries"]] == [1, 2]
    assert [e["seq"] for e in history.export(state, after=0, max_bytes=2 * size - 1)["entries"]] == [1]


@pytest.mark.parametrize("budget", [0, -5])
def test_a_window_budget_must_be_positive(budget: int) -> None:
    with pytest.raises(InvalidInputError, match=r"^'budget_bytes' must be positive$"):
        history.window(build(entry("a")), budget_bytes=budget)


def test_a_window_of_one_byte_still_holds_the_newest_message() -> None:
    assert [m.content for m in history.window(build(entry("a"), entry("b")), budget_bytes=1)] == ["hi"]


def test_the_entity_init_reads_its_arguments_and_defaults() -> None:
    state, result = apply_operation(
        history.HistoryState(), "init", {"system_prompt": "S", "metadata": {"k": 1}, "created_at": T0}
    )
    assert state is not None and result == {"last_seq": 1}
    assert (state.metadata, state.created_at, state.entries[0]["content"]) == ({"k": 1}, T0, "S")
    bare, result = apply_operation(history.HistoryState(), "init", "not an object")
    assert bare is not None and result == {"last_seq": 0}
    assert (bare.entries, bare.metadata) == ((), {})


def test_the_entity_get_pages_with_defaults_and_checks_its_numbers() -> None:
    state = build(*(entry(f"m{i}") for i in range(60)))
    _, first = apply_operation(state, "get", None)
    assert [e["seq"] for e in first["entries"]] == list(range(1, 51)) and first["next_after"] == 50
    _, later = apply_operation(state, "get", {"after": 55, "limit": 2})
    assert [e["seq"] for e in later["entries"]] == [56, 57]
    for bad, name in (({"after": "1"}, "after"), ({"limit": True}, "limit")):
        with pytest.raises(InvalidInputError, match=rf"^'{name}' must be an integer$"):
            apply_operation(state, "get", bad)


def test_the_entity_operations_read_their_arguments() -> None:
    state = build(*(entry(f"m{i}", content="x" * 100) for i in range(10)))
    _, whole = apply_operation(state, "window", {})  # the default budget holds all of it
    _, cut = apply_operation(state, "window", {"budget_bytes": 300})
    assert len(whole) == 10 and 0 < len(cut) < 10
    _, chunk = apply_operation(state, "export", {"after": 2, "max_bytes": 450})
    assert chunk == history.export(state, after=2, max_bytes=450)
    assert chunk["entries"][0]["seq"] == 3 and chunk["next_after"] is not None  # cut by max_bytes
    _, everything = apply_operation(state, "export", {})
    assert [e["seq"] for e in everything["entries"]] == list(range(1, 11))
    for operation, name in (("window", "budget_bytes"), ("export", "after"), ("export", "max_bytes")):
        with pytest.raises(InvalidInputError, match=name):
            apply_operation(state, operation, {name: "lots"})
