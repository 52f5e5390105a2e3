"""Behind App Service Authentication (TRUST_CLIENT_PRINCIPAL_HEADER=true) a thread belongs to
the principal that created it; others see it as missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.harness import DevhostProcess


@pytest.fixture(scope="module")
def guarded(
    fake_model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevhostProcess]:
    folder = tmp_path_factory.mktemp("owned")
    env = {**model_env(fake_model), "TRUST_CLIENT_PRINCIPAL_HEADER": "true"}
    host = DevhostProcess(folder / "devhost.log", backend="memory", env=env).start()
    yield host
    assert host.stop() == 0


def as_user(principal: str) -> dict[str, str]:
    return {"X-MS-CLIENT-PRINCIPAL-ID": principal}


def test_threads_belong_to_their_creator(guarded: DevhostProcess, model: FakeModelServer) -> None:
    api = guarded.api
    alice, bob = as_user(unique("alice")), as_user(unique("bob"))
    thread = unique("owned")
    assert api.request("POST", "/api/threads", {"thread_id": thread}, headers=alice).status == 201

    posted = api.request(
        "POST", f"/api/threads/{thread}/messages?wait=30", {"content": "mine"}, headers=alice
    )
    assert posted.status == 200
    assert api.request("GET", f"/api/threads/{thread}", headers=alice).status == 200

    for method, path, body in [
        ("GET", f"/api/threads/{thread}", None),
        ("GET", f"/api/threads/{thread}/messages", None),
        ("POST", f"/api/threads/{thread}/messages", {"content": "let me in"}),
        ("DELETE", f"/api/threads/{thread}", None),
    ]:
        assert api.request(method, path, body, headers=bob).status == 404, (method, path)
    listed = api.request("GET", "/api/threads?limit=200", headers=bob).json["threads"]
    assert thread not in [t["thread_id"] for t in listed]
    mine = api.request("GET", "/api/threads?limit=200", headers=alice).json["threads"]
    assert thread in [t["thread_id"] for t in mine]
    # the id is taken, whoever asks
    assert api.request("POST", "/api/threads", {"thread_id": thread}, headers=bob).status == 409
    assert api.request("DELETE", f"/api/threads/{thread}", headers=alice).status == 204


def test_without_a_principal_the_api_asks_to_sign_in(guarded: DevhostProcess) -> None:
    reply = guarded.api.post("/api/threads", {})
    assert reply.status == 401 and reply.json["code"] == "unauthorized"
    assert guarded.api.get("/api/health").status == 200
