"""Pure rules of a thread's storage entities: root, notes, blobs, message records."""

from __future__ import annotations

import pytest

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
    assert again == state and result["count"] == 1
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
