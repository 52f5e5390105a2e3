"""A thread over HTTP against devhost and the real app, with a scripted fake model."""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

from orchestrations.thread import MAX_TURNS_PER_GENERATION
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
    # The promise: once ?wait returns a reply, the thread's status already counts that
    # turn and is no longer thinking about it; a live thread reports Running.
    thread = api.get(f"/api/threads/{thread_id}").json
    assert thread["turn"] == 3 and thread["message_count"] == 6 and thread["state"] == "idle"
    assert thread["runtime_status"] == "Running"


def test_a_thread_carries_on_across_generations(api: Api, thread_id: str, model: FakeModelServer) -> None:
    """Every MAX_TURNS_PER_GENERATION turns the orchestration continues as new: the next
    turn still sees the whole conversation, and the status counts the generation."""
    for n in range(1, MAX_TURNS_PER_GENERATION + 2):
        assert send(api, thread_id, f"turn {n}")["reply"]["content"] == f"echo: turn {n}"
    thread = api.get(f"/api/threads/{thread_id}").json
    assert thread["generation"] == 1 and thread["turn"] == MAX_TURNS_PER_GENERATION + 1
    users = [m["content"] for m in model.requests[-1].messages if m["role"] == "user"]
    assert users == [f"turn {n}" for n in range(1, MAX_TURNS_PER_GENERATION + 2)]
    stored = api.get(f"/api/threads/{thread_id}/messages?limit=200").json["messages"]
    assert stored[0]["id"] == "system" and stored[0]["created_at"] == thread["created_at"]
    assert [m["seq"] for m in stored] == list(range(1, 2 * (MAX_TURNS_PER_GENERATION + 1) + 2))


def test_messages_are_answered_once_each_in_arrival_order(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    # Each POST returns once its event is raised, so posting one after another fixes the
    # arrival order; the slow first reply makes the rest queue up behind it.
    model.enqueue(steps.reply("first", delay=0.3))
    ids = [unique() for _ in range(5)]
    for i, message_id in enumerate(ids):
        posted = api.post(
            f"/api/threads/{thread_id}/messages", {"content": f"msg {i}", "message_id": message_id}
        )
        assert posted.status == 202
    wait_until(lambda: idle_after(api, thread_id, 5), what="five turns")
    entries = [e for e in conversation(api, thread_id) if e["role"] != "system"]
    assert [e["id"] for e in entries[0::2]] == ids  # user entries in arrival order
    for user, answer in zip(entries[0::2], entries[1::2], strict=True):
        assert user["role"] == "user" and answer["reply_to"] == user["id"]
    assert [a["content"] for a in entries[1::2]] == ["first"] + [f"echo: msg {i}" for i in range(1, 5)]
    assert len(model.requests) == 5


def test_concurrent_posts_are_each_answered_exactly_once(
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
    assert sorted(e["id"] for e in entries[0::2]) == sorted(ids)
    for user, answer in zip(entries[0::2], entries[1::2], strict=True):
        assert answer["reply_to"] == user["id"] and answer["content"] == f"echo: {user['content']}"


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
    assert "127.0.0.1" not in failed["reply"]["error"]["message"]  # no endpoint in what callers see
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


def test_a_retryable_failure_is_answered_again_when_re_sent(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    path = f"/api/threads/{thread_id}/messages"
    message_id = unique()
    # every attempt of the first turn fails transiently, so the turn fails as retryable
    model.enqueue(*[steps.error(503)] * 4)
    failed = api.post(f"{path}?wait=60", {"content": "try me", "message_id": message_id}).json
    assert failed["status"] == "failed" and failed["reply"]["error"]["retryable"] is True
    # the re-send fails the same way: its error entry counts the attempt
    model.enqueue(*[steps.error(503)] * 4)
    again_failed = api.post(f"{path}?wait=60", {"content": "try me", "message_id": message_id}).json
    assert again_failed["status"] == "failed" and again_failed["reply"]["attempt"] == 2
    assert again_failed["reply"]["seq"] > failed["reply"]["seq"]
    # another message is answered in between: the retry is then the latest thing asked
    assert send(api, thread_id, "meanwhile")["reply"]["content"] == "echo: meanwhile"
    retried = api.post(f"{path}?wait=60", {"content": "try me", "message_id": message_id}).json
    assert retried["status"] == "answered" and retried["reply"]["content"] == "echo: try me"
    assert retried["reply"]["attempt"] == 3
    assert [m["content"] for m in model.requests[-1].messages if m["role"] == "user"] == [
        "try me",
        "meanwhile",
        "try me",
    ]
    assert api.get(f"{path}/{message_id}").json["reply"]["content"] == "echo: try me"
    # answered now: a further re-send returns the answer and does not ask the model again
    asked = len(model.requests)
    again = api.post(f"{path}?wait=5", {"content": "try me", "message_id": message_id}).json
    assert again["reply"]["content"] == "echo: try me" and len(model.requests) == asked
    stored = api.get(f"{path}?limit=200").json["messages"]
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))  # no gaps
    users = [m for m in stored if m["role"] == "user"]
    assert [u["content"] for u in users] == ["try me", "meanwhile"]  # one user entry, three attempts
    said = [m for m in stored if m["role"] in ("user", "assistant")]
    assert api.get(f"/api/threads/{thread_id}").json["message_count"] == len(said) == 6
    answered = api.get(f"{path}/{message_id}").json
    assert answered["message"]["seq"] == users[0]["seq"] and answered["reply"]["reply_to"] == message_id


def test_a_permanent_failure_is_not_retried_by_a_re_send(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    path = f"/api/threads/{thread_id}/messages"
    message_id = unique()
    model.enqueue(steps.error(400))
    assert api.post(f"{path}?wait=60", {"content": "no", "message_id": message_id}).json["status"] == "failed"
    again = api.post(f"{path}?wait=5", {"content": "no", "message_id": message_id})
    assert again.status == 200 and again.json["status"] == "failed" and len(model.requests) == 1


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
    raise_url = f"/runtime/webhooks/durabletask/instances/{thread_id}/raiseEvent/user_message"
    for bad in (
        {"content": 42},
        {"id": "m1", "content": "\ud800"},  # text that cannot be stored as UTF-8
        {"id": "q\n", "content": "x"},
        ["not", "an", "object"],
        "a string",
        None,
    ):
        raised = api.request("POST", raise_url, raw=json.dumps(bad).encode())
        assert raised.status == 202, raised.body
    assert send(api, thread_id, "still here")["reply"]["content"] == "echo: still here"
    thread = api.get(f"/api/threads/{thread_id}").json
    assert thread["runtime_status"] == "Running" and thread["turn"] == 1
    assert devhost.log().count("skipped a malformed user_message event") >= 5
    # each log line says why, e.g. for the list
    assert "skipped a malformed user_message event: user_message event must be an object, got list" in (
        devhost.log()
    )
