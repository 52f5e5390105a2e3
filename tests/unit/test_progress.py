"""Live progress events derived from durable state: cursors, order, resumption."""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

from agent.progress import Cursor, events_since, status_version
from agent.thread import ThreadStateName, ThreadStatus


class StatusExtra(TypedDict, total=False):
    """The optional ThreadStatus fields these tests set."""

    answering: dict[str, Any] | None
    tools: tuple[str, ...]
    pending_approvals: tuple[dict[str, Any], ...]


def status(state: ThreadStateName, updated_at: str, **extra: Unpack[StatusExtra]) -> ThreadStatus:
    return ThreadStatus(
        state=state, turn=1, message_count=0, last_seq=3, updated_at=updated_at, agent="a", **extra
    )


def entry(seq: int, role: str) -> dict[str, object]:
    return {"seq": seq, "id": f"e{seq}", "role": role, "content": "x", "created_at": "t"}


def test_a_new_client_gets_every_entry_then_the_state() -> None:
    events, cursor = events_since(
        Cursor(), status("idle", "T2"), [entry(2, "user"), entry(1, "system"), entry(3, "assistant")]
    )
    assert [(e.kind, e.data.get("seq")) for e in events] == [
        ("entry", 1),
        ("message", 2),
        ("entry", 3),
        ("state", None),
    ]
    assert events[-1].id == cursor.encode() == f"3.{status_version(status('idle', 'T2'))}"


def test_a_reconnecting_client_gets_only_what_it_missed() -> None:
    entries = [entry(1, "system"), entry(2, "user"), entry(3, "assistant")]
    _, seen = events_since(Cursor(), status("thinking", "T1", answering={"id": "e2", "seq": 2}), entries[:2])
    resumed = Cursor.parse(seen.encode())
    events, after = events_since(resumed, status("idle", "T2"), entries)
    assert [(e.kind, e.data.get("seq"), e.data.get("state")) for e in events] == [
        ("entry", 3, None),
        ("state", None, "idle"),
    ]
    assert events_since(after, status("idle", "T2"), entries) == ([], after)


def test_state_events_name_running_tools_and_pending_approvals() -> None:
    approvals = ({"call_id": "c1", "tool": "save_note"}, {"call_id": "c2", "tool": "t", "decision": "denied"})
    events, _ = events_since(
        Cursor(3, "T1"), status("awaiting_approval", "T3", pending_approvals=approvals), []
    )
    assert events[0].data["pending_approvals"] == [{"call_id": "c1", "tool": "save_note"}]
    events, _ = events_since(Cursor(3, "T3"), status("running_tools", "T4", tools=("calculate",)), [])
    assert events[0].data["tools"] == ["calculate"]


def test_two_status_changes_in_the_same_millisecond_are_two_events() -> None:
    thinking, tools = status("thinking", "T1"), status("running_tools", "T1", tools=("calculate",))
    _, seen = events_since(Cursor(3, ""), thinking, [])
    events, _ = events_since(seen, tools, [])
    assert [e.data["state"] for e in events] == ["running_tools"]
    assert events_since(seen, thinking, []) == ([], seen)


def test_a_garbled_last_event_id_starts_over() -> None:
    assert Cursor.parse("nonsense") == Cursor() and Cursor.parse(None) == Cursor()
    assert Cursor.parse("12.2026-01-01T00:00:00.000Z") == Cursor(12, "2026-01-01T00:00:00.000Z")


def test_events_encode_as_server_sent_events() -> None:
    events, _ = events_since(Cursor(), None, [entry(1, "system")])
    assert events[0].encode().startswith("id: 1.\nevent: entry\ndata: {")
    assert events[0].encode().endswith("\n\n")


def test_a_state_event_carries_the_turn_the_time_and_the_message_being_answered() -> None:
    answering = status("thinking", "T5", answering={"id": "m-7", "seq": 4})
    events, _ = events_since(Cursor(3, ""), answering, [])
    assert events[0].data == {"state": "thinking", "turn": 1, "updated_at": "T5", "message_id": "m-7"}


def test_an_entry_event_keeps_the_status_the_client_had_seen() -> None:
    """A client that reconnects after an entry event must not miss a state change."""
    thinking = status("thinking", "T1")
    _, seen = events_since(Cursor(), thinking, [entry(1, "system")])
    events, _ = events_since(seen, thinking, [entry(1, "system"), entry(2, "user")])
    assert [e.kind for e in events] == ["message"]
    assert Cursor.parse(events[0].id) == Cursor(2, seen.status)


def test_a_status_version_ignores_key_order_and_is_sixteen_hex_digits() -> None:
    one = status("thinking", "T1", answering={"id": "m", "seq": 2})
    other = status("thinking", "T1", answering={"seq": 2, "id": "m"})
    assert status_version(one) == status_version(other)
    assert len(status_version(one)) == 16
    assert status_version(one) != status_version(status("idle", "T1"))


def test_events_keep_text_as_written() -> None:
    events, _ = events_since(Cursor(), None, [entry(1, "system") | {"content": "Grüße, 東京"}])
    assert "Grüße, 東京" in events[0].encode()
