"""With ownership on (AUTH_MODE=app_service|entra, or TRUST_CLIENT_PRINCIPAL_HEADER=true) the
management API would let anyone read and change every thread, so devhost makes a random key,
shows it once in its log, and requires it on every management request."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.devhost.conftest import sample_host, unique
from tests.integration.harness import DevhostProcess, wait_until

MANAGEMENT = "/runtime/webhooks/durabletask"
KEY_LINE = re.compile(r"management API \S+ needs this key .* it is shown only here: (\S+)")


@pytest.fixture(
    scope="module",
    params=[{"AUTH_MODE": "app_service"}, {"TRUST_CLIENT_PRINCIPAL_HEADER": "true"}],
    ids=["auth-mode", "trust-header"],
)
def guarded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevhostProcess]:
    folder = tmp_path_factory.mktemp("guarded")
    host = sample_host(folder / "devhost.log", env=dict(request.param)).start()
    yield host
    assert host.stop() == 0, host.log()


def key_of(host: DevhostProcess) -> str:
    found = KEY_LINE.findall(host.log())
    assert len(found) == 1, host.log()
    return str(found[0])


def test_every_management_route_needs_the_key(guarded: DevhostProcess) -> None:
    api = guarded.api
    instance = unique("guarded")
    assert api.post(f"/v1/start/waits_forever?id={instance}").status == 202  # app routes: the app's rules
    for method, path, body in [
        ("GET", f"{MANAGEMENT}/instances", None),
        ("GET", f"{MANAGEMENT}/instances/{instance}", None),
        ("POST", f"{MANAGEMENT}/instances/{instance}/raiseEvent/go", {"n": 1}),
        ("POST", f"{MANAGEMENT}/instances/{instance}/terminate", None),
        ("DELETE", f"{MANAGEMENT}/instances/{instance}", None),
        ("GET", f"{MANAGEMENT}/entities/counter/k", None),
        ("POST", f"{MANAGEMENT}/entities/counter/k?op=add", 1),
        ("GET", f"{MANAGEMENT}/nothing-here", None),
        ("GET", "/runtime/webhooks/durableTask/instances", None),
    ]:
        for headers in ({}, {"x-functions-key": "wrong"}):
            reply = api.request(method, path, body, headers=headers)
            assert reply.status == 401, (method, path, headers, reply.body)
            assert reply.content_type.startswith("application/problem+json")
            assert "x-functions-key" in reply.json["detail"]
        assert api.request(method, f"{path}{'&' if '?' in path else '?'}code=wrong", body).status == 401
    # nothing above reached the backend
    key = key_of(guarded)
    status = f"{MANAGEMENT}/instances/{instance}"
    assert api.request("GET", status, headers={"x-functions-key": key}).json["runtimeStatus"] == "Running"


def test_the_key_works_as_code_or_header_and_is_logged_only_once(guarded: DevhostProcess) -> None:
    api = guarded.api
    key = key_of(guarded)
    instance = unique("keyed")
    assert api.post(f"/v1/start/waits_forever?id={instance}").status == 202
    status = f"{MANAGEMENT}/instances/{instance}"
    wait_until(
        lambda: api.get(f"{status}?code={key}").json["runtimeStatus"] == "Running", what="the instance to run"
    )
    assert api.post(f"{status}/raiseEvent/go?code={key}", {"n": 2}).status == 202
    done = wait_until(lambda: (r := api.get(f"{status}?code={key}")).status == 200 and r.json, what="done")
    assert done["output"] == {"n": 2}
    assert api.request("GET", f"{MANAGEMENT}/instances", headers={"x-functions-key": key}).status == 200
    # requests carrying the key are logged with it redacted: the startup line stays the only copy
    wait_until(lambda: f"{status}/raiseEvent/go?code=***" in guarded.log(), what="the request's log line")
    assert guarded.log().count(key) == 1
