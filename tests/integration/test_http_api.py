"""HTTP API contract: creation, validation errors, listing, paging and deletion."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import model_server as steps
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import unique
from tests.integration.harness import Api, assert_problem, wait_until


def test_create_returns_links_and_location(api: Api) -> None:
    thread_id = unique("t")
    reply = api.post("/api/threads", {"thread_id": thread_id, "metadata": {"topic": "tests"}})
    assert reply.status == 201
    body = reply.json
    assert body["thread_id"] == thread_id
    assert body["status_url"] == f"/api/threads/{thread_id}"
    assert body["messages_url"] == f"/api/threads/{thread_id}/messages"
    assert reply.headers["location"] == body["status_url"]
    assert api.get(body["status_url"]).json["metadata"] == {"topic": "tests"}
    assert "runtime/webhooks" not in reply.body.decode()


def test_a_new_thread_reports_when_it_was_created(api: Api) -> None:
    before = datetime.now(UTC)
    created = api.post("/api/threads", {"thread_id": unique("t")}).json
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created["created_at"]), created
    moment = datetime.fromisoformat(created["created_at"])
    assert before - timedelta(milliseconds=1) <= moment <= after
    assert created["updated_at"] == created["created_at"]
    assert (created["state"], created["turn"], created["message_count"], created["runtime_status"]) == (
        "idle",
        0,
        0,
        "Running",
    )
    assert api.get(f"/api/threads/{created['thread_id']}").json["created_at"] == created["created_at"]


def test_create_without_body_generates_an_id(api: Api) -> None:
    reply = api.post("/api/threads")
    assert reply.status == 201
    assert api.get(f"/api/threads/{reply.json['thread_id']}").status == 200


def test_an_id_in_use_is_a_conflict(api: Api, thread_id: str) -> None:
    assert_problem(api.post("/api/threads", {"thread_id": thread_id}), 409, "already in use")


@pytest.mark.parametrize("bad_id", ["has space", "x" * 65, "slash/y", "", 7, "abc\n", "abc\r\n"])
def test_bad_thread_ids_are_rejected(api: Api, bad_id: object) -> None:
    assert_problem(api.post("/api/threads", {"thread_id": bad_id}), 400, "thread_id")


def test_bad_json_and_missing_fields(api: Api, thread_id: str) -> None:
    path = f"/api/threads/{thread_id}/messages"
    assert_problem(api.post(path, raw=b"{not json"), 400, "not valid JSON")
    assert_problem(api.post(path, raw=b"[1, 2]"), 400, "JSON object")
    assert_problem(api.post(path, raw=b""), 400, "needs a JSON body")
    assert_problem(api.post(path, {"text": "hi"}), 400, "content")
    assert_problem(api.post(path, {"content": ""}), 400, "empty")
    assert_problem(api.post(path, {"content": 5}), 400, "string")
    assert_problem(api.post(path, {"content": "x", "message_id": "a b"}), 400, "message_id")
    assert_problem(api.post(f"{path}?wait=500", {"content": "x"}), 400, "wait")
    assert_problem(api.get(f"{path}?limit=0"), 400, "limit")
    assert_problem(api.get(f"{path}?after=abc"), 400, "after")
    assert_problem(api.post("/api/threads", {"metadata": [1]}), 400, "metadata")


def test_too_large_is_413(api: Api, thread_id: str) -> None:
    path = f"/api/threads/{thread_id}/messages"
    assert_problem(api.post(path, {"content": "x" * (32 * 1024 + 1)}), 413, "32 KiB")
    assert_problem(api.post(path, raw=json.dumps({"content": "x" * 300_000}).encode()), 413, "request body")
    assert_problem(api.post("/api/threads", {"metadata": {"k": "v" * 5000}}), 413, "metadata")


def test_exactly_32_kib_is_accepted(api: Api, thread_id: str, model: FakeModelServer) -> None:
    reply = api.post(f"/api/threads/{thread_id}/messages?wait=30", {"content": "é" * (16 * 1024)})
    assert reply.status == 200 and reply.json["status"] == "answered"


def test_unknown_thread_is_404_everywhere(api: Api) -> None:
    missing = unique("nope")
    assert_problem(api.get(f"/api/threads/{missing}"), 404, "does not exist")
    assert_problem(api.get(f"/api/threads/{missing}/messages"), 404, "does not exist")
    assert_problem(api.get(f"/api/threads/{missing}/messages/m1"), 404, "does not exist")
    assert_problem(api.post(f"/api/threads/{missing}/messages", {"content": "hi"}), 404, "does not exist")
    assert_problem(api.delete(f"/api/threads/{missing}"), 404, "does not exist")


def test_unknown_route_and_wrong_method(api: Api) -> None:
    assert_problem(api.get("/api/nothing-here"), 404, "No function")
    reply = api.request("PUT", "/api/threads")
    assert_problem(reply, 405, "PUT")
    assert "GET" in reply.headers["allow"] and "POST" in reply.headers["allow"]


def test_message_poll_url_reports_progress(api: Api, thread_id: str, model: FakeModelServer) -> None:
    posted = api.post(f"/api/threads/{thread_id}/messages", {"content": "poll me"})
    assert posted.status == 202
    assert posted.headers["location"] == posted.json["reply_url"]
    done = api.get(posted.json["reply_url"] + "?wait=30").json
    assert done["status"] == "answered" and done["message"]["content"] == "poll me"
    assert api.get(f"/api/threads/{thread_id}/messages/{unique()}").json["status"] == "queued"


def test_history_pages_with_after_and_limit(api: Api, thread_id: str, model: FakeModelServer) -> None:
    for i in range(3):
        assert api.post(f"/api/threads/{thread_id}/messages?wait=30", {"content": f"n{i}"}).status == 200
    seqs: list[int] = []
    after: int | None = 0
    while after is not None:
        page = api.get(f"/api/threads/{thread_id}/messages?after={after}&limit=2").json
        seqs += [m["seq"] for m in page["messages"]]
        after = page["next_after"]
    assert seqs == list(range(1, 8))  # system prompt + 3 user + 3 assistant


def test_list_threads_pages_with_a_continuation_token(api: Api) -> None:
    mine = {unique("list") for _ in range(3)}
    for thread in mine:
        assert api.post("/api/threads", {"thread_id": thread}).status == 201
    seen: list[str] = []
    token = None
    for _ in range(100):
        query = "?limit=2" + (f"&continuation_token={token}" if token else "")
        page = api.get("/api/threads" + query)
        assert page.status == 200
        seen += [t["thread_id"] for t in page.json["threads"]]
        token = page.json["continuation_token"]
        if not token:
            break
    assert mine <= set(seen)
    assert len(seen) == len(set(seen))
    assert_problem(api.get("/api/threads?continuation_token=%%%"), 400, "continuation_token")


def test_delete_leaves_nothing_behind(api: Api, thread_id: str, model: FakeModelServer) -> None:
    assert api.post(f"/api/threads/{thread_id}/messages?wait=30", {"content": "remember me"}).status == 200
    assert api.delete(f"/api/threads/{thread_id}").status == 204
    assert api.get(f"/api/threads/{thread_id}").status == 404
    assert api.get(f"/api/threads/{thread_id}/messages").status == 404
    assert api.get(f"/runtime/webhooks/durabletask/instances/{thread_id}").status == 404
    assert thread_id not in [t["thread_id"] for t in api.get("/api/threads?limit=200").json["threads"]]
    # the id is free again and the new thread starts empty
    assert api.post("/api/threads", {"thread_id": thread_id}).status == 201
    entries = api.get(f"/api/threads/{thread_id}/messages").json["messages"]
    assert [e["role"] for e in entries] in ([], ["system"])


def test_health_is_open(api: Api) -> None:
    reply = api.get("/api/health")
    assert reply.status == 200 and reply.json == {"status": "healthy", "model_configured": True}


def test_bodies_that_are_not_json_get_415(api: Api, thread_id: str) -> None:
    path = f"/api/threads/{thread_id}/messages"
    for content_type in ("text/plain", "application/xml", "application/x-www-form-urlencoded"):
        reply = api.post(path, raw=b'{"content": "hi"}', headers={"Content-Type": content_type})
        assert_problem(reply, 415, "must be JSON")
    accepted = api.post(
        path, raw=b'{"content": "hi"}', headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert accepted.status == 202


def test_deep_nesting_is_a_400_not_a_crash(api: Api, thread_id: str) -> None:
    deep = b'{"content": "x", "k": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_problem(api.post(f"/api/threads/{thread_id}/messages", raw=deep), 400, "deeper than")
    assert_problem(
        api.post("/api/threads", raw=b'{"metadata": ' + b'{"a":' * 50 + b"1" + b"}" * 51), 400, "deeper"
    )


def test_text_that_is_not_valid_unicode_is_refused_and_nothing_is_written(api: Api, thread_id: str) -> None:
    path = f"/api/threads/{thread_id}/messages"
    assert_problem(api.post(path, raw=b'{"content": "\\ud800"}'), 400, "not valid Unicode")
    new_id = unique("t")
    created = api.post(
        "/api/threads", raw=json.dumps({"thread_id": new_id, "metadata": {"k": "\ud800"}}).encode()
    )
    assert_problem(created, 400, "not valid Unicode")
    assert api.get(f"/api/threads/{new_id}").status == 404
    assert api.get("/api/threads?limit=200").status == 200
    assert api.get(f"/api/threads/{thread_id}").json["turn"] == 0


def test_a_message_id_with_a_trailing_newline_is_refused_and_not_sent(api: Api, thread_id: str) -> None:
    path = f"/api/threads/{thread_id}/messages"
    assert_problem(api.post(path, {"content": "x", "message_id": "q\n"}), 400, "message_id")
    assert api.get(f"/api/threads/{thread_id}").json["turn"] == 0
    assert all(m["role"] == "system" for m in api.get(f"/api/threads/{thread_id}/messages").json["messages"])


def test_a_reused_message_id_with_other_content_is_a_conflict(
    api: Api, thread_id: str, model: FakeModelServer
) -> None:
    path = f"/api/threads/{thread_id}/messages"
    message_id = unique()
    assert api.post(f"{path}?wait=30", {"content": "first text", "message_id": message_id}).status == 200
    reused = api.post(f"{path}?wait=5", {"content": "other text", "message_id": message_id})
    assert_problem(reused, 409, "already used for other content")
    assert len(model.requests) == 1


def test_wait_answers_202_when_the_reply_is_late(api: Api, thread_id: str, model: FakeModelServer) -> None:
    model.enqueue(steps.reply("slow", delay=3))
    late = api.post(f"/api/threads/{thread_id}/messages?wait=1", {"content": "take your time"})
    assert late.status == 202 and late.json["status"] == "queued"
    assert api.get(late.json["reply_url"] + "?wait=30").json["reply"]["content"] == "slow"


def test_history_limit_defaults_to_50(api: Api, thread_id: str, model: FakeModelServer) -> None:
    for i in range(25):
        api.post(f"/api/threads/{thread_id}/messages", {"content": f"n{i}"})

    def answered_all() -> bool:
        thread = api.get(f"/api/threads/{thread_id}").json
        return bool(thread["turn"] == 25 and thread["state"] == "idle")

    wait_until(answered_all, what="25 turns answered")
    page = api.get(f"/api/threads/{thread_id}/messages").json
    assert len(page["messages"]) == 50 and page["next_after"] == 50
    rest = api.get(f"/api/threads/{thread_id}/messages?after=50").json
    assert [m["seq"] for m in rest["messages"]] == [51] and rest["next_after"] is None
