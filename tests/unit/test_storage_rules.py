"""Pure rules of a thread's storage entities: root, notes, blobs, message records."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from durabletask.entities import EntityContext

from agent import storage_rules
from agent.errors import InvalidInputError

ENTRY = {"seq": 2, "id": "m1", "role": "user", "content": "hi", "created_at": "t"}


def test_the_first_root_init_wins() -> None:
    first = storage_rules.root_init(None, {"created_at": "t1", "agent": "a"})
    assert first == {"created_at": "t1", "agent": "a", "notes": []}
    assert storage_rules.root_init(first, {"created_at": "t2", "agent": "b"}) == first


def test_notes_are_idempotent_by_id_and_bounded() -> None:
    state, result = storage_rules.root_add_note(None, {"id": "c1", "text": "remember"})
    assert result == {"saved": True, "count": 1}
    again, result = storage_rules.root_add_note(state, {"id": "c1", "text": "remember"})
    assert again == state and result == {"saved": True, "count": 1}
    big = "x" * (storage_rules.MAX_NOTE_BYTES + 1)
    same, refused = storage_rules.root_add_note(state, {"id": "c2", "text": big})
    assert same == state and refused["saved"] is False
    for i in range(storage_rules.MAX_NOTES):
        state, _ = storage_rules.root_add_note(state, {"id": f"n{i}", "text": "t"})
    _, full = storage_rules.root_add_note(state, {"id": "last", "text": "t"})
    assert full["saved"] is False and "already has" in full["reason"]
    with pytest.raises(InvalidInputError):
        storage_rules.root_add_note(state, {"text": "no id"})


def test_a_message_record_is_written_once_and_counts_retries() -> None:
    record = storage_rules.message_put(None, {"id": "m1", "seq": 2, "digest": "d", "entry": ENTRY})
    assert record == {"id": "m1", "seq": 2, "digest": "d", "attempts": 1, "entry": ENTRY}
    retried = storage_rules.message_put(record, {"id": "m1", "seq": 9, "digest": "other", "attempt": 2})
    assert retried["seq"] == 2 and retried["digest"] == "d" and retried["attempts"] == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "m\n", "seq": 2, "digest": "d", "entry": ENTRY},
        {"id": "m1", "seq": 0, "digest": "d", "entry": ENTRY},
        {"id": "m1", "seq": 2, "entry": ENTRY},
        {"id": "m1", "seq": 2, "digest": "d", "entry": {"seq": 2}},
        "nope",
    ],
)
def test_malformed_message_records_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        storage_rules.message_put(None, bad)


def test_a_blob_is_written_once() -> None:
    blob = storage_rules.blob_put(None, ENTRY)
    assert blob == ENTRY
    assert storage_rules.blob_put(blob, {**ENTRY, "content": "changed"}) == ENTRY


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda: storage_rules.root_init(None, "x"), "thread init needs an object"),
        (lambda: storage_rules.root_add_note(None, "x"), "add_note needs an object"),
        (lambda: storage_rules.page_append(None, 0, "x"), "page append needs an object"),
        (lambda: storage_rules.blob_put(None, "x"), "blob put needs an object"),
        (lambda: storage_rules.message_put(None, "x"), "message put needs an object"),
        (
            lambda: storage_rules.message_put(None, {"id": "m1", "seq": 2, "digest": "d", "entry": "x"}),
            "message entry needs an object",
        ),
    ],
)
def test_input_that_is_not_an_object_is_refused_naming_the_operation(
    call: Callable[[], object], what: str
) -> None:
    with pytest.raises(InvalidInputError, match=what):
        call()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"id": 5, "seq": 2, "digest": "d"}, "needs the message 'id'"),
        ({"id": "m1", "seq": True, "digest": "d"}, r"needs 'seq' \(a positive integer\) and 'digest'"),
        ({"id": "m1", "seq": "2", "digest": "d"}, "needs 'seq'"),
        ({"id": "m1", "seq": 2, "digest": 5}, "needs 'seq'"),
    ],
)
def test_a_malformed_message_record_says_what_is_missing(bad: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        storage_rules.message_put(None, {**bad, "entry": ENTRY})  # type: ignore[dict-item]


def test_a_message_at_seq_1_is_accepted() -> None:
    entry = {**ENTRY, "seq": 1}
    assert storage_rules.message_put(None, {"id": "m1", "seq": 1, "digest": "d", "entry": entry})["seq"] == 1


def test_retries_keep_the_highest_attempt_and_the_newest_reply_after_the_message() -> None:
    record = storage_rules.message_put(
        None, {"id": "m1", "seq": 4, "digest": "d", "entry": {**ENTRY, "seq": 4}}
    )
    put = {"id": "m1", "seq": 4, "digest": "d"}
    assert storage_rules.message_put(record, put)["attempts"] == 1  # a redelivered first put
    assert "reply_seq" not in storage_rules.message_put(record, {**put, "reply_seq": 4})  # not after it
    assert "reply_seq" not in storage_rules.message_put(record, {**put, "reply_seq": True})
    replied = storage_rules.message_put(record, {**put, "reply_seq": 5})
    assert replied["reply_seq"] == 5
    third = storage_rules.message_put(replied, {**put, "attempt": 3, "reply_seq": 9})
    assert (third["attempts"], third["reply_seq"]) == (3, 9)
    late = storage_rules.message_put(third, {**put, "attempt": 2, "reply_seq": 7})  # an older retry, late
    assert (late["attempts"], late["reply_seq"]) == (3, 9)


def test_a_page_append_needs_a_list_of_objects() -> None:
    for bad in ({"entries": "x"}, {"entries": [ENTRY, "x"]}, {}):
        with pytest.raises(InvalidInputError, match=r"^page append needs 'entries', a list of objects$"):
            storage_rules.page_append(None, 0, bad)


def test_a_root_starts_empty_when_init_names_nothing() -> None:
    assert storage_rules.root_init(None, {}) == {"created_at": "", "agent": "", "notes": []}


def test_a_note_on_a_thread_without_root_starts_one_and_keeps_its_fields() -> None:
    state, result = storage_rules.root_add_note(None, {"id": "c1", "text": "remember", "created_at": "t1"})
    assert result == {"saved": True, "count": 1}
    assert state == {
        "created_at": "",
        "agent": "",
        "notes": [{"id": "c1", "text": "remember", "created_at": "t1"}],
    }
    state, _ = storage_rules.root_add_note(state, {"id": "c2", "text": "undated"})
    assert state["notes"][1] == {"id": "c2", "text": "undated", "created_at": ""}


@pytest.mark.parametrize("bad", [{"id": "", "text": "t"}, {"id": "c", "text": 5}, {"id": 5, "text": "t"}])
def test_a_note_needs_a_string_id_and_text(bad: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^a note needs a string 'id' and 'text'$"):
        storage_rules.root_add_note(None, bad)


def test_notes_fill_up_to_exactly_the_limits() -> None:
    state, result = storage_rules.root_add_note(
        None, {"id": "c0", "text": "x" * storage_rules.MAX_NOTE_BYTES}
    )
    assert result["saved"] is True
    _, refused = storage_rules.root_add_note(
        state, {"id": "big", "text": "x" * (storage_rules.MAX_NOTE_BYTES + 1)}
    )
    assert refused == {"saved": False, "reason": f"a note holds at most {storage_rules.MAX_NOTE_BYTES} bytes"}
    for i in range(1, storage_rules.MAX_NOTES):
        state, result = storage_rules.root_add_note(state, {"id": f"c{i}", "text": "t"})
    assert result == {"saved": True, "count": storage_rules.MAX_NOTES}
    _, full = storage_rules.root_add_note(state, {"id": "one-more", "text": "t"})
    assert full == {"saved": False, "reason": f"the thread already has {storage_rules.MAX_NOTES} notes"}


def test_an_unknown_entity_operation_is_named_in_the_error() -> None:
    from entities import storage

    error = storage._unknown("history_page", "Rewrite")
    assert isinstance(error, InvalidInputError)
    assert str(error) == "the history_page entity has no operation 'Rewrite'"


class FakeEntityContext:
    """What `entities.storage._run` uses of durabletask's EntityContext."""

    def __init__(self, operation: str, state: Any) -> None:
        self.operation = operation
        self.state = state

    def get_state(self) -> Any:
        return self.state

    def set_state(self, state: Any) -> None:
        self.state = state


def test_every_entity_runs_get_delete_its_rules_and_names_an_unknown_operation() -> None:
    from entities import storage

    def bump(state: Any, arg: Any) -> tuple[Any, Any]:
        return state + arg, {"was": state}

    def run(operation: str, state: Any, arg: Any = None) -> tuple[Any, Any]:
        context = FakeEntityContext(operation, state)
        result = storage._run(cast(EntityContext, context), "tally", {"bump": bump}, arg)
        return context.state, result

    assert run("Get", 5) == (5, 5)  # operation names are matched without case
    assert run("DELETE", 5) == (None, None)
    assert run("Bump", 5, 2) == (7, {"was": 5})
    with pytest.raises(InvalidInputError) as unknown:
        run("Rewrite", 5)
    assert str(unknown.value) == "the tally entity has no operation 'rewrite'"


def test_a_history_page_key_must_end_in_its_number() -> None:
    from entities import storage

    def page_of(key: str) -> int:
        context = SimpleNamespace(entity_id=SimpleNamespace(key=key))
        return storage._page_number(cast(EntityContext, context))

    assert page_of("thread-1~0") == 0 and page_of("thread-1~12") == 12
    with pytest.raises(InvalidInputError) as refused:
        page_of("thread-1~first")
    assert str(refused.value) == "history page key 'thread-1~first' does not end in a page number"
