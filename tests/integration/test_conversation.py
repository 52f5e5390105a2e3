"""A thread over HTTP against devhost and the real app, with a scripted fake model."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from tests.fakes import model_server as steps
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import unique
from tests.integration.harness import Api, DevhostProcess, wait_until


def send(api: Api, thread_id: str, content: str, wait: int = 30, **extra: Any) -> dict[str, Any]:
    reply = api.post(f"/api/threads/{thread_id}/messages?wait={wait}", {"content": content, **extra})
    assert reply.status == 200, (reply.status, reply.body)
    body: dict[str, Any] = reply.json
    return body


def idle_after(api: Api, thread_id: str, turns: int) -> bool:
    status = api.get(f"/api/threads/{thread_id}").json
    return bool(status["turn"] == turns and status["state"] == "idle")


def conversation(api: Api, thread_id: str) -> list[dict[str, Any]]:
    page = api.get(f"/api/threads/{thread_id}/messages?limit=200")
    assert page.status == 200
    entries: list[dict[str, Any]] = page.json["messages"]
    return entries


def test_three_turns_send_the_earlier_turns_to_the_model(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    model.enqueue(steps.reply("Hi Ada."), steps.reply("You are Ada."), steps.reply("Bye."))
    assert send(api, thread_id, "I am Ada.")["reply"]["content"] == "Hi Ada."
    assert send(api, thread_id, "Who am I?")["reply"]["content"] == "You are Ada."
    third = send(api, thread_id, "Goodbye")
    assert third["status"] == "answered"
    assert third["reply"]["model"] == "fake-model"
    assert third["reply"]["usage"]["total_tokens"] > 0
    assert third["reply"]["finish_reason"] == "stop"

    last_request = model.requests[-1].messages
    assert [(m["role"], m["content"]) for m in last_request] == [
        ("system", "You are a test assistant."),
        ("user", "I am Ada."),
        ("assistant", "Hi Ada."),
        ("user", "Who am I?"),
        ("assistant", "You are Ada."),
        ("user", "Goodbye"),
    ]
    thread = api.get(f"/api/threads/{thread_id}").json
    assert thread["turn"] == 3 and thread["message_count"] == 6 and thread["state"] == "idle"
    assert thread["runtime_status"] == "Running"


def test_five_messages_at_once_are_answered_in_order_once_each(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    ids = [unique() for _ in range(5)]
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        posted = list(
            pool.map(
                lambda i: api.post(
                    f"/api/threads/{thread_id}/messages", {"content": f"msg {i}", "message_id": ids[i]}
                ),
                range(5),
            )
        )
    assert [p.status for p in posted] == [202] * 5
    wait_until(lambda: idle_after(api, thread_id, 5), what="five turns")
    entries = [e for e in conversation(api, thread_id) if e["role"] != "system"]
    assert len(entries) == 10
    users = [e for e in entries if e["role"] == "user"]
    assert sorted(u["id"] for u in users) == sorted(ids)
    # Each user message is immediately followed by its own reply: one turn at a time, in arrival order.
    for user, answer in zip(entries[0::2], entries[1::2], strict=True):
        assert user["role"] == "user" and answer["reply_to"] == user["id"]
        assert answer["content"] == f"echo: {user['content']}"
    assert len(model.requests) == 5


def test_a_message_sent_while_the_thread_continues_as_new_is_answered(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    # The first reply is slow; the second message lands while turn 1 runs and the
    # orchestration continues-as-new right after it.
    model.enqueue(steps.reply("first", delay=0.5))
    first = api.post(f"/api/threads/{thread_id}/messages", {"content": "one"})
    wait_until(lambda: api.get(f"/api/threads/{thread_id}").json["state"] == "thinking", what="thinking")
    second = send(api, thread_id, "two")
    assert second["reply"]["content"] == "echo: two"
    answered = api.get(f"/api/threads/{thread_id}/messages/{first.json['message_id']}").json
    assert answered["status"] == "answered" and answered["reply"]["content"] == "first"
    # and one sent just as a turn completes
    model.enqueue(steps.reply("third", delay=0.2))
    third = api.post(f"/api/threads/{thread_id}/messages", {"content": "three"})
    wait_until(
        lambda: (
            api.get(f"/api/threads/{thread_id}/messages/{third.json['message_id']}").json["status"]
            == "answered"
        ),
        what="third reply",
    )
    fourth = send(api, thread_id, "four")
    assert fourth["reply"]["content"] == "echo: four"
    assert api.get(f"/api/threads/{thread_id}").json["turn"] == 4


def test_429_then_success_gives_one_reply(api: Api, thread_id: str, model: FakeModelServer) -> None:
    model.enqueue(steps.error(429, retry_after_ms=200), steps.reply("after the wait"))
    result = send(api, thread_id, "hello")
    assert result["reply"]["content"] == "after the wait"
    assert [r.served for r in model.requests] == ["error", "reply"]
    replies = [e for e in conversation(api, thread_id) if e["role"] == "assistant"]
    assert len(replies) == 1


def test_permanent_400_records_an_error_turn_and_the_next_message_works(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    model.enqueue(steps.error(400, message="bad request from the test"))
    failed = send(api, thread_id, "this fails")
    assert failed["status"] == "failed"
    assert failed["reply"]["error"]["code"] == "model_rejected"
    assert failed["reply"]["error"]["retryable"] is False
    assert "400" in failed["reply"]["error"]["message"]
    assert len(model.requests) == 1  # not retried
    status = api.get(f"/api/threads/{thread_id}").json
    assert status["state"] == "error" and status["turn"] == 1

    ok = send(api, thread_id, "this works")
    assert ok["reply"]["content"] == "echo: this works"
    # the failed turn is not sent to the model again
    assert [m["content"] for m in model.requests[-1].messages if m["role"] == "user"] == [
        "this fails",
        "this works",
    ]
    assert api.get(f"/api/threads/{thread_id}").json["state"] == "idle"


def test_content_filter_refusal_becomes_an_error_turn(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    model.enqueue(steps.content_filter())
    failed = send(api, thread_id, "something filtered")
    assert failed["reply"]["error"]["code"] == "content_filtered"
    assert len(model.requests) == 1


def test_a_resent_message_id_is_answered_once(api: Api, thread_id: str, model: FakeModelServer) -> None:
    message_id = unique()
    first = send(api, thread_id, "same", message_id=message_id)
    again = api.post(
        f"/api/threads/{thread_id}/messages?wait=2", {"content": "same", "message_id": message_id}
    )
    assert again.status == 200 and again.json["reply"]["id"] == first["reply"]["id"]
    send(api, thread_id, "next")  # proves the duplicate event was consumed, not stuck
    users = [e for e in conversation(api, thread_id) if e["role"] == "user"]
    assert [u["content"] for u in users] == ["same", "next"]
    assert len(model.requests) == 2


def test_a_malformed_event_is_skipped_and_the_thread_lives_on(
    api: Api, devhost: DevhostProcess, thread_id: str, model: FakeModelServer
) -> None:
    raised = api.post(
        f"/runtime/webhooks/durabletask/instances/{thread_id}/raiseEvent/user_message", {"content": 42}
    )
    assert raised.status == 202
    assert send(api, thread_id, "still here")["reply"]["content"] == "echo: still here"
    assert api.get(f"/api/threads/{thread_id}").json["runtime_status"] == "Running"
    assert "skipped a malformed user_message event" in devhost.log()
