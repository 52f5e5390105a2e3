"""Agents that act, through devhost over HTTP: tool calls as durable steps, approvals, the
Agent Framework's run contract. The scripted fake model asks for the tool calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes import model_server as steps
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.harness import Api, DevhostProcess, assert_problem, wait_until
from tests.integration.in_process import new_devhost


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def agents_host(
    request: pytest.FixtureRequest, fake_model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevhostProcess]:
    folder = tmp_path_factory.mktemp(f"tools-{request.param}")
    env = {**model_env(fake_model), "MAX_TOOL_ROUNDS": "3", "APPROVAL_TIMEOUT_SECONDS": "3"}
    host = new_devhost(
        folder / "devhost.log",
        backend=str(request.param),
        db_path=folder / "taskhub.db" if request.param == "sqlite" else None,
        env=env,
    ).start()
    yield host
    assert host.stop() == 0, host.log()


@pytest.fixture
def api(agents_host: DevhostProcess) -> Api:
    return agents_host.api


def new_thread(api: Api, **body: Any) -> str:
    created = api.post("/api/threads", {"thread_id": unique("t"), **body})
    assert created.status == 201, created.body
    return str(created.json["thread_id"])


def ask(api: Api, thread_id: str, content: str, wait: int = 30) -> dict[str, Any]:
    reply = api.post(f"/api/threads/{thread_id}/messages?wait={wait}", {"content": content})
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json
    return body


def entries(api: Api, thread_id: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = api.get(f"/api/threads/{thread_id}/messages?limit=200").json["messages"]
    return messages


def test_one_tool_call_runs_and_its_result_reaches_the_model(api: Api, model: FakeModelServer) -> None:
    thread_id = new_thread(api)
    model.enqueue(steps.tool_calls([{"name": "calculate", "arguments": {"expression": "6*7"}}]))
    answer = ask(api, thread_id, "What is six times seven?")
    assert answer["reply"]["content"] == "echo: tool: 42"  # the echo of the tool result
    stored = entries(api, thread_id)
    assert [e["seq"] for e in stored] == [1, 2, 3, 4, 5]  # every entry numbered, none skipped
    calls_entry = stored[2]
    assert set(calls_entry["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert calls_entry["finish_reason"] == "tool_calls" and calls_entry["reply_to"] == stored[1]["id"]
    roles = [(e["role"], bool(e.get("tool_calls"))) for e in stored]
    assert roles == [
        ("system", False),
        ("user", False),
        ("assistant", True),
        ("tool", False),
        ("assistant", False),
    ]
    sent = model.requests[-1].messages
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "calculate"
    assert sent[-1] == {"role": "tool", "content": "42", "tool_call_id": sent[-2]["tool_calls"][0]["id"]}
    assert api.get(f"/api/threads/{thread_id}").json["message_count"] == 2


def test_a_thread_of_another_agent_speaks_with_its_instructions_and_tools(
    api: Api, model: FakeModelServer
) -> None:
    thread_id = new_thread(api, agent="calculator")
    assert api.get(f"/api/threads/{thread_id}").json["agent"] == "calculator"
    ask(api, thread_id, "2+2?")
    sent = model.requests[-1]
    assert sent.tool_names == ["calculate"]  # the calculator's tools only
    assert sent.body["temperature"] == 0.0
    system = sent.messages[0]
    assert system["role"] == "system" and system["content"].startswith("You are a calculator")


def test_two_calls_from_one_reply_both_run(api: Api, model: FakeModelServer) -> None:
    thread_id = new_thread(api)
    model.enqueue(
        steps.tool_calls(
            [
                {"name": "calculate", "arguments": {"expression": "1+1"}},
                {"name": "current_time", "arguments": {}},
            ]
        ),
        steps.reply("both done"),
    )
    assert ask(api, thread_id, "sum and time")["reply"]["content"] == "both done"
    tools = [e for e in entries(api, thread_id) if e["role"] == "tool"]
    assert [t["name"] for t in tools] == ["calculate", "current_time"]
    assert tools[0]["content"] == "2" and tools[1]["content"].startswith("20")


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ({"name": "calculate", "arguments": {"expression": "1/0"}}, "error"),
        ({"name": "no_such_tool", "arguments": {}}, "no_such_tool"),
        ({"name": "calculate", "arguments": {"wrong": 1}}, "expression"),
        ({"name": "calculate", "arguments": "{not json"}, "JSON"),
    ],
)
def test_tool_failures_go_back_to_the_model_and_the_turn_succeeds(
    api: Api, model: FakeModelServer, call: dict[str, Any], expected: str
) -> None:
    thread_id = new_thread(api)
    model.enqueue(steps.tool_calls([call]), steps.reply("recovered"))
    answer = ask(api, thread_id, "try a tool")
    assert answer["status"] == "answered" and answer["reply"]["content"] == "recovered"
    (tool,) = [e for e in entries(api, thread_id) if e["role"] == "tool"]
    assert tool["is_error"] is True and expected in tool["content"]
    assert model.requests[-1].messages[-1]["role"] == "tool"  # the model saw the failure


def test_the_rounds_limit_ends_the_turn_with_a_clear_message(api: Api, model: FakeModelServer) -> None:
    thread_id = new_thread(api)
    loop = steps.tool_calls([{"name": "calculate", "arguments": {"expression": "1+1"}}])
    model.enqueue(*[loop] * 4)
    answer = ask(api, thread_id, "loop forever")
    assert answer["status"] == "answered"
    assert "stopped after 3 rounds" in answer["reply"]["content"]
    assert answer["reply"]["finish_reason"] == "tool_rounds_exhausted"
    assert len([e for e in entries(api, thread_id) if e["role"] == "tool"]) == 3


def pending(api: Api, thread_id: str) -> list[dict[str, Any]]:
    thread = api.get(f"/api/threads/{thread_id}").json
    if thread["state"] != "awaiting_approval":
        return []
    approvals: list[dict[str, Any]] = thread["pending_approvals"]
    return approvals


def test_an_approved_tool_runs_and_a_message_sent_meanwhile_is_answered_after(
    api: Api, model: FakeModelServer
) -> None:
    thread_id = new_thread(api)
    model.enqueue(steps.tool_calls([{"name": "save_note", "arguments": {"text": "buy milk"}}]))
    first = api.post(f"/api/threads/{thread_id}/messages", {"content": "remember milk"})
    approvals = wait_until(lambda: pending(api, thread_id), what="an approval request")
    assert approvals[0]["tool"] == "save_note" and approvals[0]["arguments"] == {"text": "buy milk"}
    call_id = approvals[0]["call_id"]
    assert approvals[0]["approve_url"] == f"/api/threads/{thread_id}/approvals/{call_id}"
    queued = api.post(f"/api/threads/{thread_id}/messages", {"content": "and eggs?"})
    assert queued.status == 202
    decided = api.post(approvals[0]["approve_url"], {"approve": True})
    assert decided.status == 202 and decided.json["decision"] == "approved"
    done = api.get(first.json["reply_url"] + "?wait=30").json
    assert done["status"] == "answered" and done["reply"]["content"].startswith("echo: tool: ")
    later = api.get(queued.json["reply_url"] + "?wait=30").json
    assert later["reply"]["content"] == "echo: and eggs?"
    notes = api.get(f"/api/threads/{thread_id}/notes").json["notes"]
    assert [n["text"] for n in notes] == ["buy milk"]
    again = api.post(f"/api/threads/{thread_id}/approvals/{call_id}", {"approve": False})
    assert again.status == 409
    assert api.post(f"/api/threads/{thread_id}/approvals/nope", {"approve": True}).status == 404
    users = [e["content"] for e in entries(api, thread_id) if e["role"] == "user"]
    assert users == ["remember milk", "and eggs?"]


def test_an_approval_shows_arguments_that_are_not_json_as_sent_and_bad_decisions_are_refused(
    api: Api, model: FakeModelServer
) -> None:
    thread_id = new_thread(api)
    model.enqueue(steps.tool_calls([{"name": "save_note", "arguments": "{not json"}]))
    posted = api.post(f"/api/threads/{thread_id}/messages", {"content": "note something"})
    (approval,) = wait_until(lambda: pending(api, thread_id), what="an approval request")
    assert approval["arguments"] == "{not json"  # shown to the person deciding as the model sent it
    url = approval["approve_url"]
    bad_reason = "'reason' must be a string of at most 1000 characters"
    for target, body, says in (
        (f"/api/threads/{thread_id}/approvals/no$such", {"approve": True}, "The tool call id must be"),
        (url, {"reason": "why"}, 'needs "approve": true or false'),
        (url, {"approve": "yes"}, 'needs "approve": true or false'),
        (url, {"approve": True, "reason": 7}, bad_reason),
        (url, {"approve": True, "reason": "r" * 1001}, bad_reason),
    ):
        assert_problem(api.post(target, body), 400, says)
    assert pending(api, thread_id) == [approval]  # nothing refused was taken as a decision
    assert api.post(url, {"approve": True, "reason": "r" * 1000}).status == 202
    done = api.get(posted.json["reply_url"] + "?wait=30").json
    assert done["status"] == "answered"
    (tool,) = [e for e in entries(api, thread_id) if e["role"] == "tool"]
    assert tool["is_error"] is True and "not valid JSON" in tool["content"]
    assert api.get(f"/api/threads/{thread_id}/notes").json["notes"] == []


def test_a_denied_tool_does_not_run_and_the_model_hears_why(api: Api, model: FakeModelServer) -> None:
    thread_id = new_thread(api)
    model.enqueue(steps.tool_calls([{"name": "save_note", "arguments": {"text": "secret"}}]))
    posted = api.post(f"/api/threads/{thread_id}/messages", {"content": "note this"})
    (approval,) = wait_until(lambda: pending(api, thread_id), what="an approval request")
    assert api.post(approval["approve_url"], {"approve": False, "reason": "not now"}).status == 202
    done = api.get(posted.json["reply_url"] + "?wait=30").json
    assert "denied" in done["reply"]["content"] and "not now" in done["reply"]["content"]
    assert api.get(f"/api/threads/{thread_id}/notes").json["notes"] == []
    (tool,) = [e for e in entries(api, thread_id) if e["role"] == "tool"]
    assert (tool["approval"], tool["name"], tool["is_error"]) == ("denied", "save_note", True)
    assert tool["content"] == "denied: the user did not allow save_note (not now)"


def test_an_approval_nobody_gives_times_out(api: Api, model: FakeModelServer) -> None:
    thread_id = new_thread(api)
    model.enqueue(steps.tool_calls([{"name": "save_note", "arguments": {"text": "later"}}]))
    posted = api.post(f"/api/threads/{thread_id}/messages", {"content": "note it"})
    wait_until(lambda: pending(api, thread_id), what="an approval request")
    done = api.get(posted.json["reply_url"] + "?wait=30").json
    assert "timed out" in done["reply"]["content"]
    (tool,) = [e for e in entries(api, thread_id) if e["role"] == "tool"]
    assert tool["approval"] == "timed_out" and api.get(f"/api/threads/{thread_id}/notes").json["notes"] == []
    assert (tool["name"], tool["is_error"]) == ("save_note", True)
    assert tool["content"].startswith("timed out: nobody approved save_note within ")


def test_two_approvals_are_decided_one_at_a_time(api: Api, model: FakeModelServer) -> None:
    thread_id = new_thread(api)
    model.enqueue(
        steps.tool_calls(
            [
                {"name": "save_note", "arguments": {"text": "first"}},
                {"name": "save_note", "arguments": {"text": "second"}},
            ]
        )
    )
    posted = api.post(f"/api/threads/{thread_id}/messages", {"content": "note both"})
    both = wait_until(lambda: pending(api, thread_id), what="two approval requests")
    assert [a["arguments"]["text"] for a in both] == ["first", "second"]
    answering = api.get(posted.json["reply_url"]).json
    assert answering["status"] == "answering"
    assert api.post(both[0]["approve_url"], {"approve": False}).status == 202
    # the thread still waits, now for the second call only
    wait_until(
        lambda: [a["call_id"] for a in pending(api, thread_id)] == [both[1]["call_id"]], what="one left"
    )
    again = api.post(both[0]["approve_url"], {"approve": True})  # a decision stands
    assert (
        again.status == 409
        and again.json["detail"] == f"Tool call '{both[0]['call_id']}' was already denied."
    )
    assert api.post(both[1]["approve_url"], {"approve": True}).status == 202
    done = api.get(posted.json["reply_url"] + "?wait=30").json
    assert done["status"] == "answered"
    tools = [e for e in entries(api, thread_id) if e["role"] == "tool"]
    assert [(t["approval"], t.get("is_error", False)) for t in tools] == [
        ("denied", True),
        ("approved", False),
    ]
    assert tools[0]["content"] == "denied: the user did not allow save_note"
    assert [n["text"] for n in api.get(f"/api/threads/{thread_id}/notes").json["notes"]] == ["second"]


def test_tool_pairs_survive_the_context_window(
    fake_model: FakeModelServer, model: FakeModelServer, tmp_path: Any
) -> None:
    env = {**model_env(fake_model), "CONTEXT_WINDOW_BYTES": "1000"}
    host = new_devhost(tmp_path / "devhost.log", backend="memory", env=env).start()
    try:
        api = host.api
        thread_id = new_thread(api)
        for i in range(4):
            model.enqueue(steps.tool_calls([{"name": "calculate", "arguments": {"expression": f"{i}+{i}"}}]))
            ask(api, thread_id, f"question {i} " + "x" * 150)
        for request in model.requests:
            sent = request.messages
            called = {c["id"] for m in sent for c in m.get("tool_calls") or ()}
            answered = {m["tool_call_id"] for m in sent if m["role"] == "tool"}
            assert called == answered, sent  # every call with its result, every result with its call
            assert sent[1]["role"] != "tool"
        assert len(model.requests[-1].messages) < 4 * 4  # the window did trim
    finally:
        assert host.stop() == 0


def test_the_agents_are_listed_with_their_tools(api: Api) -> None:
    listed = api.get("/api/agents").json["agents"]
    assert listed[0]["name"] == "assistant"
    tools = {t["name"]: t for t in listed[0]["tools"]}
    assert set(tools) == {"current_time", "calculate", "save_note"}
    assert tools["save_note"]["needs_approval"] is True
    assert tools["calculate"]["parameters"]["required"] == ["expression"]
    names = [a["name"] for a in listed]
    thread_id = new_thread(api, agent=names[1])
    assert api.get(f"/api/threads/{thread_id}").json["agent"] == names[1]
    assert api.post("/api/threads", {"agent": "nobody"}).status == 400


def test_an_agent_run_whose_model_refuses_is_a_502_problem(api: Api, model: FakeModelServer) -> None:
    model.enqueue(steps.error(400, message="refused by the test"))
    failed = api.post("/api/agents/assistant/run", {"message": "please fail"})
    assert_problem(failed, 502, "The agent could not answer: ")
    assert failed.json["detail"].endswith("(model_rejected)")
    assert len(model.requests) == 1


def test_the_agent_framework_run_contract(api: Api, model: FakeModelServer) -> None:
    first = api.post("/api/agents/assistant/run", {"message": "hello"})
    assert first.status == 200, first.body
    thread_id = first.headers["x-ms-thread-id"]
    assert first.json == {
        "status": "success",
        "response": "echo: hello",
        "message_count": 2,
        "thread_id": thread_id,
    }
    second = api.post("/api/agents/assistant/run", {"message": "again", "thread_id": thread_id})
    assert second.json["message_count"] == 4 and second.headers["x-ms-thread-id"] == thread_id
    plain = api.request(
        "POST",
        f"/api/agents/assistant/run?thread_id={thread_id}",
        raw=b"plain words",
        headers={"Content-Type": "text/plain"},
    )
    assert plain.status == 200 and plain.body == b"echo: plain words"
    assert (
        plain.headers["content-type"].startswith("text/plain")
        and plain.headers["x-ms-thread-id"] == thread_id
    )
    queued = api.request(
        "POST", "/api/agents/assistant/run", {"message": "later"}, headers={"x-ms-wait-for-response": "false"}
    )
    assert queued.status == 202 and queued.json["correlation_id"]
    body_flag = api.post("/api/agents/assistant/run", {"message": "later", "wait_for_response": False})
    assert body_flag.status == 202
    # ordinary threads: every other route works on them
    assert api.get(f"/api/threads/{thread_id}").json["message_count"] == 6
    assert api.post("/api/agents/nobody/run", {"message": "x"}).status == 404
    health = api.get("/api/health").json
    assert health["status"] == "healthy" and "model_configured" in health
    assert json.loads(json.dumps(health))  # stays JSON
