"""Pure rules of the paged history: page arithmetic, blobs for large entries, final replies."""

from __future__ import annotations

from typing import Any

import pytest

from agent import history
from agent.errors import InvalidInputError
from agent.payload import encoded_size

T0 = "2026-01-01T00:00:00.000Z"


def entry(seq: int, role: str = "user", content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "id": f"e{seq}", "role": role, "content": content, "created_at": T0} | extra


def test_pages_hold_fixed_seq_ranges() -> None:
    assert [history.page_of(s) for s in (1, 32, 33, 64, 65)] == [0, 0, 1, 1, 2]
    assert history.page_bounds(0) == (1, 32)
    assert history.page_bounds(2) == (65, 96)


def test_pages_for_a_request_cover_exactly_its_range() -> None:
    assert history.pages_for(after=0, limit=50, last_seq=7) == [0]
    assert history.pages_for(after=30, limit=10, last_seq=1000) == [0, 1]
    assert history.pages_for(after=64, limit=1, last_seq=1000) == [2]
    assert history.pages_for(after=7, limit=50, last_seq=7) == []
    # cost of one page does not depend on the thread's length
    assert history.pages_for(after=99_968, limit=50, last_seq=10**6) == [3124, 3125]


def test_appending_to_a_page_is_idempotent_by_seq_and_keeps_order() -> None:
    state = history.page_append(None, 0, [entry(2), entry(1, "system")])
    again = history.page_append(state, 0, [entry(2, content="changed"), entry(3)])
    assert [(e["seq"], e["content"]) for e in again["entries"]] == [(1, "hi"), (2, "hi"), (3, "hi")]


def test_an_entry_outside_its_page_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="does not belong on page 1"):
        history.page_append(None, 1, [entry(5)])


def test_large_entries_become_blobs_with_a_stub_on_the_page() -> None:
    cap = 256 * 1024
    small, large = entry(2), entry(3, content="x" * (history.inline_limit(cap) + 1))
    items, blobs = history.split_for_storage([small, large], cap)
    assert items[0] == small and blobs == [large]
    assert history.is_stub(items[1]) and items[1]["seq"] == 3 and "content" not in items[1]


def test_a_full_page_of_the_largest_inline_entries_fits_the_cap() -> None:
    cap = 64 * 1024
    content = "x" * (history.inline_limit(cap) - 200)
    entries = [entry(s, content=content) for s in range(1, history.PAGE_ENTRIES + 1)]
    items, blobs = history.split_for_storage(entries, cap)
    assert blobs == []
    assert encoded_size(history.page_append(None, 0, items)) <= cap


@pytest.mark.parametrize(
    "bad",
    [
        {"seq": 0, "id": "a", "role": "user", "content": "x", "created_at": T0},
        {"seq": True, "id": "a", "role": "user", "content": "x", "created_at": T0},
        {"seq": 1, "id": "", "role": "user", "content": "x", "created_at": T0},
        {"seq": 1, "id": "a", "role": "robot", "content": "x", "created_at": T0},
        {"seq": 1, "id": "a", "role": "user", "content": None, "created_at": T0},
        {"seq": 1, "id": "a", "role": "user", "content": "x"},
        "not an object",
    ],
)
def test_malformed_entries_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        history.validate_entry(bad)


def test_the_final_reply_is_the_newest_non_tool_answer_to_the_message() -> None:
    entries = [
        entry(2, id="q"),
        entry(3, "assistant", "", reply_to="q", tool_calls=[{"id": "c"}]),
        entry(4, "tool", "r", tool_call_id="c"),
        entry(5, "assistant", "", reply_to="q", error={"code": "x", "retryable": True}),
        entry(6, "assistant", "second try", reply_to="q", attempt=2),
    ]
    reply = history.final_reply(entries, "q")
    assert reply is not None and reply["seq"] == 6
    assert history.final_reply(entries[:3], "q") is None


def test_a_request_starting_at_a_page_boundary_reads_from_the_next_page() -> None:
    assert history.pages_for(after=31, limit=1, last_seq=1000) == [0]
    assert history.pages_for(after=32, limit=1, last_seq=1000) == [1]


def test_the_inline_limit_is_a_fortieth_of_the_cap() -> None:
    assert history.inline_limit(40 * 1000) == 1000
    assert history.inline_limit(41 * 1000 - 1) == 1024  # not 41 * 1000 // 41


def test_an_entry_exactly_at_the_inline_limit_stays_on_the_page() -> None:
    cap = 40 * 2000
    base = entry(3, content="")
    exact = entry(3, content="x" * (history.inline_limit(cap) - encoded_size(base)))
    assert encoded_size(exact) == history.inline_limit(cap)
    items, blobs = history.split_for_storage([exact], cap)
    assert items == [exact] and blobs == []


def test_a_stub_records_the_blob_size_and_is_recognised_only_without_content() -> None:
    big = entry(4, content="y" * 500)
    stub = history.stub_for(big)
    assert stub["blob"] == encoded_size(big) and "content" not in stub
    assert history.is_stub(stub)
    assert not history.is_stub(big)
    assert not history.is_stub({**big, "blob": 3})  # content present: not a stub
    assert not history.is_stub({"seq": 4})


def test_only_an_assistant_entry_replying_to_the_message_ends_its_turn() -> None:
    entries = [
        entry(2, "user", id="m1"),
        entry(3, "tool", reply_to="m1"),  # a tool result carries reply_to but is no reply
        entry(4, "assistant", reply_to="m2"),
    ]
    assert history.final_reply(entries, "m1") is None
    failed = entry(5, "assistant", reply_to="m1", tool_calls=[{"id": "c"}], error={"code": "x"})
    assert history.final_reply([*entries, failed], "m1") == failed


def test_an_entry_repeated_within_one_append_is_stored_once() -> None:
    assert history.page_append(None, 0, [entry(2), entry(2, content="again")]) == {"entries": [entry(2)]}


@pytest.mark.parametrize(
    ("after", "limit", "message"),
    [
        (-1, 10, r"^'after' must be 0 or a positive sequence number$"),
        (0, 0, r"^'limit' must be between 1 and 200$"),
        (0, history.MAX_PAGE_SIZE + 1, r"^'limit' must be between 1 and 200$"),
    ],
)
def test_a_page_request_out_of_bounds_is_refused(after: int, limit: int, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        history.check_page_request(after, limit)


@pytest.mark.parametrize(("after", "limit"), [(0, 1), (0, history.MAX_PAGE_SIZE), (7, 50)])
def test_page_requests_within_bounds_pass(after: int, limit: int) -> None:
    history.check_page_request(after, limit)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("text", r"^a history entry must be an object$"),
        (entry(2) | {"seq": 0}, r"^a history entry needs 'seq', a positive integer$"),
        (entry(2) | {"seq": True}, r"^a history entry needs 'seq', a positive integer$"),
        (entry(2) | {"id": ""}, r"^a history entry needs a non-empty string 'id'$"),
        (entry(2) | {"role": "robot"}, r"^a history entry's role must be one of .*, got 'robot'$"),
        (entry(2) | {"content": None}, r"^a history entry's 'content' must be a string$"),
        (entry(2) | {"created_at": 5}, r"^a history entry needs 'created_at' as an ISO 8601 string$"),
    ],
)
def test_a_malformed_entry_is_refused_saying_what_is_wrong(bad: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        history.validate_entry(bad)
