"""Thread state, user-message parsing, status and failure classification."""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import pytest

from agent.errors import (
    ContentFilteredError,
    InvalidInputError,
    ModelRejectedError,
    ModelUnavailableError,
    PayloadTooLargeError,
    error_for_failure,
    public_message,
)
from agent.thread import (
    MAX_CONTENT_BYTES,
    RECENT_IDS_KEPT,
    ThreadConfig,
    ThreadState,
    ThreadStatus,
    UserMessage,
    check_id,
    content_digest,
)
from agent.window import ContextWindow


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
    config = ThreadConfig(created_at="t", system_prompt="S", agent="a", metadata={"k": "v"}, owner="o")
    state = ThreadState(
        config=config,
        initialized=True,
        turn=3,
        next_seq=8,
        message_count=6,
        window=ContextWindow.of([{"seq": 7, "role": "assistant", "content": "r"}], 48_000),
        recent=(("m1", "d1", 2), ("m2", "d2", 4)),
        last_state="error",
        last_message_id="m2",
        last_turn={"id": "m2", "seq": 4},
    )
    assert ThreadState.from_input(state.to_dict()) == state
    assert ThreadState.is_current(state.to_dict())
    assert ThreadState.from_input(None) == ThreadState()
    assert not ThreadState.is_current({"turn": 3, "recent_ids": []})  # a thread from before paging


def test_recent_ids_remember_digest_and_seq_and_stay_bounded() -> None:
    state = ThreadState()
    for i in range(RECENT_IDS_KEPT + 5):
        state = state.remember(f"m{i}", f"d{i}", i + 2)
    assert len(state.recent) == RECENT_IDS_KEPT
    assert state.find_recent("m0") is None
    assert state.find_recent(f"m{RECENT_IDS_KEPT + 4}") == (f"d{RECENT_IDS_KEPT + 4}", RECENT_IDS_KEPT + 6)


def test_ids_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        check_id("abc\n", "id")
    with pytest.raises(InvalidInputError):
        UserMessage.from_event({"id": "q\n", "content": "x"})


def test_text_that_is_not_valid_unicode_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="not valid Unicode"):
        UserMessage.from_event({"id": "m1", "content": "\ud800"})


def test_a_retry_event_names_the_stored_message() -> None:
    message = UserMessage.from_event({"id": "m", "content": "x", "retry": True, "retry_seq": 4})
    assert message.retry and message.retry_seq == 4
    assert UserMessage.from_event(message.to_dict()) == message
    assert "retry" not in UserMessage(id="m", content="x").to_dict()


def test_status_round_trips_and_old_statuses_are_not_mistaken_for_it() -> None:
    status = ThreadStatus(
        state="thinking",
        turn=2,
        message_count=3,
        last_seq=5,
        updated_at="t",
        agent="a",
        answering={"id": "m", "seq": 5},
    )
    assert ThreadStatus.from_dict(status.to_dict()) == status
    assert (
        ThreadStatus.from_dict({"state": "idle", "turn": 1, "last_message_id": "m", "updated_at": "t"})
        is None
    )


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


@pytest.mark.parametrize(
    ("detail", "leaked"),
    [
        (
            "Azure OpenAI deployment 'd' at https://acme.openai.azure.com/ rejected it",
            "acme.openai.azure.com",
        ),
        ("could not reach http://10.1.2.3:8080/v1 (ConnectError)", "10.1.2.3"),
        ("HTTP 429 from acme.openai.azure.com: slow down", "acme"),
    ],
)
def test_public_messages_name_no_endpoint(detail: str, leaked: str) -> None:
    text = public_message(detail)
    assert leaked not in text and "the model endpoint" in text


def test_every_config_field_survives_the_round_trip() -> None:
    config = ThreadConfig(
        created_at="2026-01-02T03:04:05Z",
        system_prompt="Be brief.",
        agent="planner",
        context_window_bytes=1234,
        payload_cap_bytes=99_999,
        metadata={"team": "ops"},
        owner="user-1",
        max_tool_rounds=3,
        approval_timeout_seconds=60.5,
        caller="c-digest",
        count_tokens=True,
    )
    assert ThreadConfig.from_dict(asdict(config)) == config


@pytest.mark.parametrize("data", [None, "config", 5, [], {}])
def test_a_missing_config_reads_as_the_defaults(data: object) -> None:
    config = ThreadConfig.from_dict(data)
    assert config == ThreadConfig()
    assert (config.system_prompt, config.agent, config.context_window_bytes) == ("", "assistant", 48_000)
    assert (config.payload_cap_bytes, config.max_tool_rounds) == (256 * 1024, 8)
    assert (config.approval_timeout_seconds, config.count_tokens) == (86_400.0, False)


def test_config_fields_of_the_wrong_type_are_dropped() -> None:
    config = ThreadConfig.from_dict(
        {"created_at": 5, "owner": ["o"], "caller": 7, "count_tokens": "yes", "agent": ""}
    )
    assert (config.created_at, config.owner, config.caller) == (None, None, None)
    assert config.count_tokens is False
    assert config.agent == "assistant"


def test_state_of_the_current_schema_with_nothing_set_is_the_default() -> None:
    assert ThreadState.from_input({"schema": ThreadState().to_dict()["schema"]}) == ThreadState()


def test_state_generation_and_bad_fields_are_read_carefully() -> None:
    data = ThreadState(generation=7, turn=2).to_dict()
    data["recent"] = [["m1", "d1", 2], ["only", "two"], "junk", ("m3", "d3", 5)]
    data["last_state"] = "dreaming"
    state = ThreadState.from_input(data)
    assert state.generation == 7
    assert state.recent == (("m1", "d1", 2), ("m3", "d3", 5))
    assert state.last_state == "idle"


def test_every_status_field_survives_the_round_trip() -> None:
    status = ThreadStatus(
        state="awaiting_approval",
        turn=4,
        message_count=7,
        last_seq=12,
        updated_at="2026-01-02T03:04:05Z",
        agent="planner",
        last_message_id="m-4",
        answering={"id": "m-4", "seq": 11},
        last_turn={"id": "m-3", "seq": 8},
        tools=("book_table", "send_email"),
        pending_approvals=({"call_id": "c1", "tool": "book_table", "arguments": {"seats": 2}},),
        generation=3,
    )
    data = status.to_dict()
    assert set(data) == {
        "state", "turn", "message_count", "last_seq", "updated_at", "agent", "last_message_id",
        "answering", "last_turn", "tools", "pending_approvals", "generation",
    }  # fmt: skip
    assert data["tools"] == ["book_table", "send_email"]
    assert data["pending_approvals"] == [{"call_id": "c1", "tool": "book_table", "arguments": {"seats": 2}}]
    assert ThreadStatus.from_dict(data) == status


def test_a_status_with_only_its_marker_reads_as_defaults_and_drops_bad_fields() -> None:
    assert ThreadStatus.from_dict({"last_seq": 0}) == ThreadStatus(
        state="idle", turn=0, message_count=0, last_seq=0, updated_at="", agent="assistant"
    )
    status = ThreadStatus.from_dict(
        {
            "last_seq": 3,
            "state": "dreaming",
            "answering": "m-1",
            "last_turn": ["m-1"],
            "tools": [1, "t"],
            "pending_approvals": [{"call_id": "c"}, "junk"],
        }
    )
    assert status is not None
    assert (status.state, status.answering, status.last_turn) == ("idle", None, None)
    assert status.tools == ("1", "t")
    assert status.pending_approvals == ({"call_id": "c"},)


def test_content_digest_is_32_hex_characters_of_the_utf8_sha256() -> None:
    digest = content_digest("héllo")
    assert digest == hashlib.sha256("héllo".encode()).hexdigest()[:32]
    assert len(digest) == 32


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (5, InvalidInputError, r"^'content' must be a string$"),
        ("", InvalidInputError, r"^'content' must not be empty$"),
        (
            "a\ud800",
            InvalidInputError,
            r"^'content' is not valid Unicode text \(it holds a lone surrogate\)$",
        ),
        (
            "é" * (MAX_CONTENT_BYTES // 2 + 1),
            PayloadTooLargeError,
            rf"^'content' is {MAX_CONTENT_BYTES + 2} bytes; "
            rf"the limit is {MAX_CONTENT_BYTES} bytes \(32 KiB\)$",
        ),
    ],
)
def test_bad_content_is_refused_with_a_message_that_says_why(
    content: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        UserMessage.from_event({"id": "m", "content": content})


def test_remembering_a_message_again_replaces_its_record() -> None:
    state = ThreadState().remember("m1", "d1", 2).remember("m2", "d1", 4).remember("m1", "d2", 6)
    assert state.recent == (("m2", "d1", 4), ("m1", "d2", 6))


def test_a_bad_id_names_the_field_and_the_pattern() -> None:
    with pytest.raises(InvalidInputError) as refused:
        check_id("a b", "The thread id")
    assert (
        str(refused.value) == "The thread id must match ^[A-Za-z0-9_-]{1,64}$ (letters, digits, '_' or '-')"
    )
    with pytest.raises(InvalidInputError, match=r"^message id must match "):
        UserMessage.from_event({"id": "a b", "content": "x"})
    with pytest.raises(InvalidInputError, match=r"^user_message event must be an object, got list$"):
        UserMessage.from_event(["m", "x"])


@pytest.mark.parametrize(
    ("extra", "attempt", "retry_seq", "sent_at"),
    [
        ({"retry": True, "retry_seq": 4, "attempt": 3}, 3, 4, None),
        ({"retry": True, "retry_seq": 4, "attempt": 2}, 2, 4, None),
        ({"retry": True, "attempt": 1}, 1, None, None),
        ({"retry": True, "attempt": True, "retry_seq": True}, 1, None, None),
        ({"attempt": "3", "retry_seq": "4", "sent_at": 5}, 1, None, None),
        ({"sent_at": "2026-12-03T06:00:00Z"}, 1, None, "2026-12-03T06:00:00Z"),
        ({"sent_at": "\ud800"}, 1, None, None),
    ],
)
def test_optional_event_fields_are_kept_only_when_well_formed(
    extra: dict[str, object], attempt: int, retry_seq: int | None, sent_at: str | None
) -> None:
    message = UserMessage.from_event({"id": "m", "content": "x", **extra})
    assert (message.attempt, message.retry_seq, message.sent_at) == (attempt, retry_seq, sent_at)


@pytest.mark.parametrize(
    ("detail", "public"),
    [
        (
            "Azure OpenAI deployment 'd' at https://acme.openai.azure.com/ rejected it",
            "Azure OpenAI deployment 'd' at the model endpoint rejected it",
        ),
        (
            "could not reach http://10.1.2.3:8080/v1 (ConnectError)",
            "could not reach the model endpoint (ConnectError)",
        ),
        ("HTTP 429 from acme.openai.azure.com: slow down", "HTTP 429 from the model endpoint: slow down"),
        ("connect to 10.0.0.7 failed", "connect to the model endpoint failed"),
    ],
)
def test_public_messages_say_the_model_endpoint_where_an_address_was(detail: str, public: str) -> None:
    assert public_message(detail) == public


def test_the_longest_error_name_in_a_wrapped_failure_wins() -> None:
    """A host-wrapped failure can name two of our errors; the longer name is the more
    specific (here the model's rejection, not the 404 it quotes)."""
    message = "Exception: ModelRejectedError: upstream said NotFoundError"
    assert error_for_failure("FunctionInvocationException", message) == (ModelRejectedError.code, False)
