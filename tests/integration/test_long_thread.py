"""Threads of any length: a thread far past 4 MB on SQLite, every piece under the cap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import model_server as steps
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env
from tests.integration.harness import Api, DevhostProcess
from tests.integration.taskhub_scan import largest_values

CAP = 256 * 1024
TURNS = 150
USER_BYTES = 32 * 1024
REPLY_BYTES = 20_000


@pytest.fixture(scope="module")
def host(fake_model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    folder = tmp_path_factory.mktemp("long-thread")
    devhost = DevhostProcess(
        folder / "devhost.log", backend="sqlite", db_path=folder / "taskhub.db", env=model_env(fake_model)
    ).start()
    yield devhost
    assert devhost.stop() == 0, devhost.log()


def test_a_thread_well_past_4_mb_keeps_answering_with_every_piece_under_the_cap(
    host: DevhostProcess, model: FakeModelServer
) -> None:
    api: Api = host.api
    assert api.post("/api/threads", {"thread_id": "long"}).status == 201
    total = 0
    for turn in range(TURNS):
        model.enqueue(steps.reply(f"r{turn} " + "y" * REPLY_BYTES))
        content = f"u{turn} " + "x" * (USER_BYTES - 8)
        reply = api.post("/api/threads/long/messages?wait=60", {"content": content, "message_id": f"m{turn}"})
        assert reply.status == 200 and reply.json["status"] == "answered", (turn, reply.body[:300])
        assert reply.json["reply"]["content"].startswith(f"r{turn} ")
        total += len(content) + REPLY_BYTES
    assert total > 4 * 1024 * 1024 * 1.5

    # every entry pages back, in order, each page bounded whatever the thread's length
    seqs: list[int] = []
    after: int | None = 0
    while after is not None:
        page = api.get(f"/api/threads/long/messages?after={after}&limit=200")
        assert page.status == 200
        seqs += [m["seq"] for m in page.json["messages"]]
        assert len(page.body) < 2 * 1024 * 1024
        after = page.json["next_after"]
    assert seqs == list(range(1, 2 * TURNS + 2))
    thread = api.get("/api/threads/long").json
    assert thread["turn"] == TURNS and thread["message_count"] == 2 * TURNS
    assert thread["generation"] > 10  # the orchestration continued as new along the way

    # the model saw a bounded window, never the whole thread
    assert max(len(json.dumps(r.body)) for r in model.requests) < CAP

    largest = largest_values(host.db_path or Path())
    assert largest[0][0] <= CAP, largest
    assert "RESOURCE_EXHAUSTED" not in host.log()
