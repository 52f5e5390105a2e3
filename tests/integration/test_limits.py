"""Per-caller limits through devhost: 429 with Retry-After, and nothing written past a limit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import model_server as steps
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env
from tests.integration.harness import Api, wait_until
from tests.integration.in_process import new_devhost


@pytest.fixture(scope="module")
def limited(fake_model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("limits")
    env = {
        **model_env(fake_model),
        "RATE_LIMIT_MESSAGES_PER_MINUTE": "3",
        "RATE_LIMIT_THREADS_PER_PRINCIPAL": "2",
        "RATE_LIMIT_TOKENS_PER_DAY": "1000",
        "TRUST_CLIENT_PRINCIPAL_HEADER": "true",
    }
    host = new_devhost(folder / "devhost.log", backend="memory", env=env).start()
    yield host.api
    assert host.stop() == 0, host.log()


def as_(principal: str) -> dict[str, str]:
    return {"X-MS-CLIENT-PRINCIPAL-ID": principal}


def test_messages_past_the_per_minute_limit_get_429_and_are_not_stored(
    limited: Api, model: FakeModelServer
) -> None:
    api, who = limited, as_("msg-sender")
    assert api.request("POST", "/api/threads", {"thread_id": "limit-m"}, headers=who).status == 201
    for i in range(3):
        sent = api.request("POST", "/api/threads/limit-m/messages?wait=30", {"content": f"m{i}"}, headers=who)
        assert sent.status == 200, sent.body
    refused = api.request("POST", "/api/threads/limit-m/messages", {"content": "one too many"}, headers=who)
    assert refused.status == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json["code"] == "rate_limited"
    contents = [
        m["content"]
        for m in api.request("GET", "/api/threads/limit-m/messages", headers=who).json["messages"]
    ]
    assert "one too many" not in contents
    # another caller is counted on its own
    other = as_("someone-else")
    assert api.request("POST", "/api/threads", {"thread_id": "limit-o"}, headers=other).status == 201
    assert (
        api.request("POST", "/api/threads/limit-o/messages", {"content": "hi"}, headers=other).status == 202
    )


def test_threads_past_the_limit_get_429_until_one_is_deleted(limited: Api, model: FakeModelServer) -> None:
    api, who = limited, as_("thread-maker")
    assert api.request("POST", "/api/threads", {"thread_id": "limit-t1"}, headers=who).status == 201
    assert api.request("POST", "/api/threads", {"thread_id": "limit-t2"}, headers=who).status == 201

    # a create returns once the caller's count shows it, so the third is refused at once
    third = api.request("POST", "/api/threads", {"thread_id": "limit-t3"}, headers=who)
    assert third.status == 429 and int(third.headers["retry-after"]) >= 1, third.body
    assert api.request("GET", "/api/threads/limit-t3", headers=who).status == 404  # nothing written
    assert api.request("DELETE", "/api/threads/limit-t1", headers=who).status == 204
    wait_until(
        lambda: api.request("POST", "/api/threads", {"thread_id": "limit-t3"}, headers=who).status != 429,
        what="room for a thread again",
    )
    assert api.request("GET", "/api/threads/limit-t3", headers=who).status == 200


def test_tokens_past_the_daily_budget_get_429_until_midnight(limited: Api, model: FakeModelServer) -> None:
    api, who = limited, as_("big-spender")
    assert api.request("POST", "/api/threads", {"thread_id": "limit-k"}, headers=who).status == 201
    model.enqueue(
        steps.reply("expensive", usage={"prompt_tokens": 900, "completion_tokens": 200, "total_tokens": 1100})
    )
    sent = api.request("POST", "/api/threads/limit-k/messages?wait=30", {"content": "spend"}, headers=who)
    assert sent.status == 200

    def over_budget() -> bool:
        reply = api.request("POST", "/api/threads/limit-k/messages", {"content": "more?"}, headers=who)
        return reply.status == 429 and "model budget" in reply.json["detail"]

    wait_until(over_budget, what="the day's tokens to be counted")


def test_the_tokens_of_every_tool_round_count_toward_the_budget(limited: Api, model: FakeModelServer) -> None:
    api, who = limited, as_("tool-spender")
    assert api.request("POST", "/api/threads", {"thread_id": "limit-r"}, headers=who).status == 201
    half = {"prompt_tokens": 500, "completion_tokens": 100, "total_tokens": 600}
    model.enqueue(
        steps.tool_calls([{"name": "calculate", "arguments": {"expression": "1+1"}}], usage=half),
        steps.reply("two", usage=half),  # each round alone is under the 1000-token budget
    )
    sent = api.request("POST", "/api/threads/limit-r/messages?wait=30", {"content": "1+1?"}, headers=who)
    assert sent.status == 200 and sent.json["reply"]["content"] == "two", sent.body

    def over_budget() -> bool:
        reply = api.request("POST", "/api/threads/limit-r/messages", {"content": "more?"}, headers=who)
        return reply.status == 429 and "model budget" in reply.json["detail"]

    wait_until(over_budget, what="both rounds' tokens to be counted")
