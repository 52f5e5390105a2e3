"""A host with the smallest payload cap (64 KiB): the limits that follow from it.

With PAYLOAD_CAP_BYTES=65536 a message may take 32 KiB once encoded for storage and a
reply 16 KiB. Text within the 32 KiB character limit can still be too large encoded (every
`"` becomes `\\"`); a longer reply is cut and marked, never dropped or failed; and a
generation of the thread ends once the payloads it carried pass the cap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fakes import model_server as steps
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.harness import Api, assert_problem, wait_until
from tests.integration.in_process import new_devhost

REPLY_LIMIT = (65536 - 16 * 1024 - 16 * 1024) // 2  # half of what a model request may carry


@pytest.fixture(scope="module")
def small(fake_model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("small-cap")
    env = {**model_env(fake_model), "PAYLOAD_CAP_BYTES": "65536", "CONTEXT_WINDOW_BYTES": "20000"}
    host = new_devhost(folder / "devhost.log", backend="memory", env=env).start()
    yield host.api
    assert host.stop() == 0, host.log()


def new_thread(api: Api) -> str:
    thread_id = unique("t")
    assert api.post("/api/threads", {"thread_id": thread_id}).status == 201
    return thread_id


def test_text_too_large_once_encoded_is_refused_before_it_is_stored(
    small: Api, model: FakeModelServer
) -> None:
    thread_id = new_thread(small)
    quotes = '"' * 20_000  # 20,000 bytes as text, 40,002 once JSON-encoded
    refused = small.post(f"/api/threads/{thread_id}/messages", {"content": quotes})
    assert_problem(refused, 413, "'content' takes 40002 bytes once encoded for storage; the limit is 32768")
    assert model.requests == []
    assert [m["role"] for m in small.get(f"/api/threads/{thread_id}/messages").json["messages"]] == ["system"]


def test_a_reply_longer_than_a_thread_stores_is_cut_and_marked(small: Api, model: FakeModelServer) -> None:
    thread_id = new_thread(small)
    long_text = "word " * 5_000  # 25,000 bytes
    model.enqueue(steps.reply(long_text))
    reply = small.post(f"/api/threads/{thread_id}/messages?wait=30", {"content": "talk a lot"}).json["reply"]
    assert reply["truncated"] is True and reply["finish_reason"] == "length"
    assert long_text.startswith(reply["content"])
    # cut close to the limit, not far below it
    assert REPLY_LIMIT - 1024 < len(json.dumps(reply).encode()) <= REPLY_LIMIT
    stored = small.get(f"/api/threads/{thread_id}/messages").json["messages"][-1]
    assert stored["content"] == reply["content"] and stored["truncated"] is True


def talk(api: Api, thread_id: str, content: str, answer: str) -> None:
    sent = api.post(f"/api/threads/{thread_id}/messages?wait=30", {"content": content})
    assert sent.status == 200 and sent.json["reply"]["content"] == answer, sent.body


def test_a_generation_ends_once_the_payloads_it_carried_pass_the_cap(
    small: Api, model: FakeModelServer
) -> None:
    """A turn carries its message's text four times: the event, the model request, the
    history page write and the message index record. 4 x 17,000 bytes pass the 65,536-byte
    cap, so the generation ends after that one turn."""
    thread_id = new_thread(small)
    model.enqueue(steps.reply("ok"))
    talk(small, thread_id, "m" * 17_000, "ok")
    wait_until(lambda: small.get(f"/api/threads/{thread_id}").json["generation"] == 1, what="generation 1")


def test_a_generation_under_the_cap_goes_on(small: Api, model: FakeModelServer) -> None:
    """4 x 12,000 bytes, and the next turn's request carrying them again in the window,
    stay under the cap: both turns run in the first generation, which goes on."""
    thread_id = new_thread(small)
    model.enqueue(steps.reply("ok"))
    talk(small, thread_id, "m" * 12_000, "ok")
    talk(small, thread_id, "next", "echo: next")
    thread = small.get(f"/api/threads/{thread_id}").json
    assert (thread["generation"], thread["turn"]) == (0, 2)
