"""Behind App Service Authentication (TRUST_CLIENT_PRINCIPAL_HEADER=true) a thread belongs to
the principal that created it; others see it as missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.harness import DevhostProcess
from tests.integration.in_process import new_devhost


@pytest.fixture(scope="module")
def guarded(
    fake_model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevhostProcess]:
    folder = tmp_path_factory.mktemp("owned")
    env = {**model_env(fake_model), "TRUST_CLIENT_PRINCIPAL_HEADER": "true"}
    host = new_devhost(folder / "devhost.log", backend="memory", env=env).start()
    yield host
    assert host.stop() == 0


def thread_routes(thread: str, message_id: str) -> list[tuple[str, str, object]]:
    """Every route that names a thread (a new one must be added here)."""
    return [
        ("GET", f"/api/threads/{thread}", None),
        ("GET", f"/api/threads/{thread}/messages", None),
        ("GET", f"/api/threads/{thread}/messages/{message_id}", None),
        ("POST", f"/api/threads/{thread}/messages", {"content": "let me in"}),
        ("GET", f"/api/threads/{thread}/events?timeout=0", None),
        ("GET", f"/api/threads/{thread}/notes", None),
        ("POST", f"/api/threads/{thread}/approvals/call_1", {"approve": True}),
        ("DELETE", f"/api/threads/{thread}", None),
    ]


def test_every_thread_route_is_covered_by_the_ownership_checks() -> None:
    from devhost.app_index import load_app
    from tests.integration.harness import REPO

    routes = {f.route for f in load_app(REPO) if f.route and "{thread_id}" in f.route}
    checked = {path.split("?")[0].replace("T", "{thread_id}", 1) for _, path, _ in thread_routes("T", "M")}
    checked = {c.replace("/M", "/{message_id}").replace("/call_1", "/{call_id}") for c in checked}
    assert {f"/api/{r}" for r in routes} <= checked


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

    message_id = posted.json["message_id"]
    for method, path, body in thread_routes(thread, message_id):
        assert api.request(method, path, body, headers=bob).status == 404, (method, path)
    assert api.request(
        "POST", f"/api/agents/assistant/run?thread_id={thread}", {"message": "x"}, headers=bob
    ).status in (404, 409)
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
    for method, path, body in [*thread_routes("any-thread", "m1"), ("GET", "/api/threads", None)]:
        refused = guarded.api.request(method, path, body)
        assert refused.status == 401, (method, path, refused.status)
    assert guarded.api.post("/api/agents/assistant/run", {"message": "x"}).status == 401
    assert guarded.api.get("/api/health").status == 200
