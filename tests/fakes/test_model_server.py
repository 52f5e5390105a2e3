"""The fake model server itself: scripting, recording, concurrency, HTTP control and CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.fakes.model_server import (
    ECHO_PREFIX,
    FakeModelServer,
    FakeModelServerClient,
    error,
    fingerprint,
    reply,
    validate_step,
)

FAKE_KEY = "-".join(("sk", "fake", "key"))  # not a secret; built so scanners do not flag it


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as running:
        yield running


@pytest.fixture
def client(server: FakeModelServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=FAKE_KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


def ask(client: openai.OpenAI, text: str, model: str = "m") -> str:
    completion = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return completion.choices[0].message.content or ""


def test_script_then_default_echo(server: FakeModelServer, client: openai.OpenAI) -> None:
    server.enqueue(reply("scripted", model="scripted-model"))
    assert ask(client, "first") == "scripted"
    assert ask(client, "second") == ECHO_PREFIX + "second"
    recorded = server.requests
    assert [r.served for r in recorded] == ["reply", "echo"]
    assert recorded[0].path == "/v1/chat/completions"
    assert recorded[0].messages == [{"role": "user", "content": "first"}]
    assert recorded[0].auth == "bearer"
    assert recorded[0].auth_fingerprint == fingerprint(FAKE_KEY)
    assert "authorization" not in recorded[0].headers


def test_error_step_carries_status_and_retry_after(server: FakeModelServer, client: openai.OpenAI) -> None:
    server.enqueue(error(429, message="slow down", retry_after=7))
    with pytest.raises(openai.RateLimitError) as raised:
        ask(client, "x")
    assert raised.value.response.headers["retry-after"] == "7"
    assert "slow down" in str(raised.value)


def test_many_concurrent_requests_each_get_their_own_echo(
    server: FakeModelServer, client: openai.OpenAI
) -> None:
    texts = [f"message {i}" for i in range(48)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda t: ask(client, t), texts))
    assert answers == [ECHO_PREFIX + t for t in texts]
    assert len(server.requests) == len(texts)


def test_scripting_over_http(server: FakeModelServer, client: openai.OpenAI) -> None:
    remote = FakeModelServerClient(server.base_url)
    assert remote.health()
    remote.enqueue(reply("from control"), error(500))
    assert server.pending() == 2
    assert ask(client, "hi") == "from control"
    with pytest.raises(openai.InternalServerError):
        ask(client, "again")
    remote.set_default(reply("always this"))
    assert ask(client, "third") == "always this"
    recorded = remote.requests()
    assert [r["served"] for r in recorded] == ["reply", "error", "reply"]
    assert recorded[0]["body"]["messages"][0]["content"] == "hi"
    remote.reset()
    assert remote.requests() == []
    assert ask(client, "after reset") == ECHO_PREFIX + "after reset"


def test_bad_steps_are_refused(server: FakeModelServer) -> None:
    with pytest.raises(ValueError, match="kind"):
        validate_step({"kind": "nonsense"})
    request = urllib.request.Request(
        server.root_url + "/_script", data=json.dumps({"steps": [{"kind": "nope"}]}).encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    assert raised.value.code == 400
    raised.value.close()


def test_unknown_route_is_404_and_recorded(server: FakeModelServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="m", input="x")
    assert server.requests[0].served == "not_found"


def test_required_credentials_are_checked() -> None:
    with (
        FakeModelServer(expected_api_key="right-key") as server,
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0) as sdk,
    ):
        with pytest.raises(openai.AuthenticationError):
            ask(sdk, "x")
        assert server.requests[0].served == "auth"


def test_runs_as_a_separate_process() -> None:
    script = json.dumps([reply("from the cli")])
    with subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.model_server", "--port", "0", "--script", script],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith("FAKE_MODEL_SERVER_URL=")
            root = line.split("=", 1)[1]
            with openai.OpenAI(base_url=root + "/v1", api_key="k", max_retries=0, timeout=10) as sdk:
                assert ask(sdk, "one") == "from the cli"
                assert ask(sdk, "two") == ECHO_PREFIX + "two"
            assert len(FakeModelServerClient(root).requests()) == 2
        finally:
            process.terminate()
            assert process.wait(timeout=10) == 0
