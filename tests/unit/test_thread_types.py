"""Thread state, user-message parsing, status and failure classification."""

from __future__ import annotations

import pytest

from agent.errors import (
    ContentFilteredError,
    InvalidInputError,
    ModelRejectedError,
    ModelUnavailableError,
    PayloadTooLargeError,
    error_for_failure,
)
from agent.thread import MAX_CONTENT_BYTES, RECENT_IDS_KEPT, ThreadState, UserMessage, check_id, thread_status


def test_user_message_parses_a_valid_event() -> None:
    message = UserMessage.from_event({"id": "m-1", "content": "hello", "sent_at": "t"})
    assert message == UserMessage(id="m-1", content="hello", sent_at="t")


@pytest.mark.parametrize(
    "event",
    [
        None,
        "text",
        [1],
        {"id": "m"},
        {"content": "x"},
        {"id": "bad id", "content": "x"},
        {"id": "m", "content": ""},
    ],
)
def test_user_message_rejects_malformed_events(event: object) -> None:
    with pytest.raises(InvalidInputError):
        UserMessage.from_event(event)


def test_content_limit_is_32_kib_in_utf8_bytes() -> None:
    UserMessage.from_event({"id": "m", "content": "x" * MAX_CONTENT_BYTES})
    with pytest.raises(PayloadTooLargeError):
        UserMessage.from_event({"id": "m", "content": "é" * (MAX_CONTENT_BYTES // 2 + 1)})


@pytest.mark.parametrize("value", ["a", "A_b-9", "x" * 64])
def test_ids_accept_the_documented_pattern(value: str) -> None:
    assert check_id(value, "id") == value


@pytest.mark.parametrize("value", ["", "x" * 65, "a b", "a/b", "ä", None, 5])
def test_ids_reject_anything_else(value: object) -> None:
    with pytest.raises(InvalidInputError):
        check_id(value, "id")


def test_thread_state_round_trips_and_tolerates_garbage() -> None:
    state = ThreadState(
        turn=3, recent_ids=("a", "b"), last_message_id="b", initialized=True, metadata={"k": "v"}
    )
    assert ThreadState.from_input(state.to_dict()) == state
    assert ThreadState.from_input(None) == ThreadState()
    assert ThreadState.from_input({"last_state": "weird"}).last_state == "idle"


def test_after_turn_counts_and_keeps_a_bounded_id_list() -> None:
    state = ThreadState()
    for i in range(RECENT_IDS_KEPT + 5):
        state = state.after_turn(f"m{i}", "idle")
    assert state.turn == RECENT_IDS_KEPT + 5
    assert len(state.recent_ids) == RECENT_IDS_KEPT
    assert state.recent_ids[-1] == f"m{RECENT_IDS_KEPT + 4}"
    assert state.after_turn("x", "error").last_state == "error"


def test_thread_status_shape() -> None:
    status = thread_status(ThreadState(turn=2, last_message_id="m"), "thinking", "T")
    assert status == {"state": "thinking", "turn": 2, "last_message_id": "m", "updated_at": "T"}


@pytest.mark.parametrize(
    ("error_type", "message", "expected"),
    [
        ("ModelRejectedError", "400 bad", (ModelRejectedError.code, False)),
        ("agent.errors.ContentFilteredError", "filtered", (ContentFilteredError.code, False)),
        (
            "FunctionInvocationException",
            "Exception: ModelUnavailableError: 429 x5",
            (ModelUnavailableError.code, True),
        ),
        ("ValueError", "boom", ("model_error", False)),
    ],
)
def test_error_for_failure_recovers_code_and_retryability(
    error_type: str, message: str, expected: tuple[str, bool]
) -> None:
    assert error_for_failure(error_type, message) == expected
