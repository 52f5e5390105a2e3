"""HTTP API contract: creation, validation errors, listing, paging and deletion."""

from __future__ import annotations

import json

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import unique
from tests.integration.harness import Api


def assert_problem(reply: object, status: int, fragment: str) -> None:
    assert reply.status == status, (reply.status, reply.body)  # type: ignore[attr-defined]
    assert reply.content_type.startswith("application/problem+json")  # type: ignore[attr-defined]
    body = reply.json  # type: ignore[attr-defined]
    assert body["status"] == status and fragment in body["detail"], body
    assert "Traceback" not in reply.body.decode()  # type: ignore[attr-defined]


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


def test_create_without_body_generates_an_id(api: Api) -> None:
    reply = api.post("/api/threads")
    assert reply.status == 201
    assert api.get(f"/api/threads/{reply.json['thread_id']}").status == 200


def test_an_id_in_use_is_a_conflict(api: Api, thread_id: str) -> None:
    assert_problem(api.post("/api/threads", {"thread_id": thread_id}), 409, "already in use")


@pytest.mark.parametrize("bad_id", ["has space", "x" * 65, "slash/y", "", 7])
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
    seqs, after = [], 0
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
    assert reply.status == 200 and reply.json == {"status": "ok", "model_configured": True}
