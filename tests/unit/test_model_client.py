"""The real model client through the real openai SDK against the scripted fake server on loopback."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError, DefaultAzureCredential, ManagedIdentityCredential

from agent import openai_model
from agent.errors import (
    ConfigurationError,
    ContentFilteredError,
    ModelCallError,
    ModelNotConfiguredError,
    ModelRejectedError,
    ModelUnavailableError,
)
from agent.model import ChatMessage
from agent.openai_model import (
    AZURE_OPENAI_SCOPE,
    OpenAIChatModel,
    azure_credential,
    build_model_client,
    get_model_client,
    reset_model_client,
)
from agent.settings import DECLARED_SETTINGS, DEFAULT_AZURE_OPENAI_API_VERSION, get_settings, load_settings
from tests.fakes.clock import FakeClock
from tests.fakes.model_server import (
    ECHO_PREFIX,
    FakeModelServer,
    content_filter,
    disconnect,
    error,
    fingerprint,
    malformed,
    reply,
)
from tests.unit.model_client_support import (
    API_KEY,
    PROMPT,
    TOKEN,
    FakeCredential,
    ask,
    azure,
    compatible,
)


def test_reply_fields_are_mapped(server: FakeModelServer, clock: FakeClock) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    server.enqueue(
        reply("Hello there", model="gpt-test-2026", finish_reason="length", usage=usage, delay=0.05)
    )
    with compatible(server, clock) as model:
        answer = ask(model)
    assert answer.content == "Hello there"
    assert answer.model == "gpt-test-2026"
    assert answer.finish_reason == "length"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (
        11,
        7,
        18,
    )
    assert 50 <= answer.latency_ms < 5000


def test_messages_and_options_sent_match_the_request(server: FakeModelServer, clock: FakeClock) -> None:
    messages = [
        ChatMessage("system", "You are terse."),
        ChatMessage("user", "What is 2+2?"),
        ChatMessage("assistant", "4"),
        ChatMessage("user", "And 3+3?"),
    ]
    with compatible(server, clock, MODEL_MAX_OUTPUT_TOKENS="64") as model:
        answer = model.complete(messages)
    assert answer.content == ECHO_PREFIX + "And 3+3?"
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.messages == [{"role": m.role, "content": m.content} for m in messages]
    assert request.body["model"] == "test-model"
    assert request.body["max_tokens"] == 64
    assert "stream" not in request.body
    assert request.auth == "bearer"
    assert request.auth_fingerprint == fingerprint(API_KEY)


def test_429_with_retry_after_is_honoured(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(error(429, message="Rate limit exceeded", retry_after=2), reply("after the wait"))
    with compatible(server, clock) as model:
        assert ask(model).content == "after the wait"
    assert clock.sleeps == [2.0]
    assert len(server.requests) == 2


def test_retry_after_ms_wins_and_long_waits_are_capped(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(error(429, retry_after=9, retry_after_ms=1500), error(503, retry_after=3600), reply("ok"))
    with compatible(server, clock, MODEL_RETRY_MAX_SECONDS="1000") as model:
        assert ask(model).content == "ok"
    assert clock.sleeps == [1.5, 60.0]


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(server: FakeModelServer, clock: FakeClock, status: int) -> None:
    server.enqueue(error(status))
    with compatible(server, clock) as model:
        assert ask(model).content == ECHO_PREFIX + PROMPT
    assert len(server.requests) == 2
    assert len(clock.sleeps) == 1


def test_500_then_503_then_success(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(error(500), error(503), reply("third time lucky"))
    with compatible(server, clock) as model:
        assert ask(model).content == "third time lucky"
    assert [r.served for r in server.requests] == ["error", "error", "reply"]
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.5
    assert 0 <= clock.sleeps[1] <= 1.0


def test_timeout_then_success(server: FakeModelServer, clock: FakeClock) -> None:
    # The reply that is too late would take 30 s; MODEL_TIMEOUT_SECONDS=0.3 must cut that
    # attempt short. Here the behaviour *is* a duration, so the test keeps a wall-clock
    # bound: 10 s, far below the 30 s an ignored timeout costs and far above the ~0.4 s this
    # takes, so a loaded (2-core, shared) machine cannot make it fail by being slow.
    server.enqueue(reply("too late", delay=30.0), reply("in time"))
    started = time.monotonic()
    with compatible(server, clock, MODEL_TIMEOUT_SECONDS="0.3") as model:
        assert ask(model).content == "in time"
    assert time.monotonic() - started < 10.0
    assert len(server.requests) == 2
    assert len(clock.sleeps) == 1


def _client_for(provider: str, server: FakeModelServer, clock: FakeClock, **env: str) -> OpenAIChatModel:
    if provider == "openai-compatible":
        return compatible(server, clock, **env)
    if provider == "azure-api-key":
        return azure(server, clock, AZURE_OPENAI_API_KEY=API_KEY, **env)
    return azure(server, clock, FakeCredential(), **env)  # azure-entra-id


@pytest.mark.parametrize("provider", ["openai-compatible", "azure-api-key", "azure-entra-id"])
@pytest.mark.parametrize(
    "failure",
    [error(429), error(500), error(503, retry_after=1), disconnect()],
    ids=["429", "500", "503", "disconnect"],
)
def test_the_openai_clients_own_retries_are_off(
    server: FakeModelServer, clock: FakeClock, provider: str, failure: dict[str, Any]
) -> None:
    # README: "the openai client's own retries are off", for Azure OpenAI as for any
    # OpenAI-compatible endpoint. The SDK retries these failures by itself (twice, by
    # default); with one attempt allowed by our policy the server must see one request.
    server.enqueue(failure, reply("a retry the SDK made on its own"))
    with (
        _client_for(provider, server, clock, MODEL_MAX_ATTEMPTS="1") as model,
        pytest.raises(ModelUnavailableError, match="after 1 attempt in "),
    ):
        ask(model)
    assert len(server.requests) == 1
    assert clock.sleeps == []


def test_malformed_and_empty_bodies_are_retried(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(
        malformed("{not json"),
        malformed('{"unexpected": true}'),
        malformed("<html>gateway</html>", content_type="text/html"),
        reply(None),
        reply("finally"),
    )
    with compatible(server, clock, MODEL_MAX_ATTEMPTS="5") as model:
        assert ask(model).content == "finally"
    assert len(server.requests) == 5


def test_dropped_connection_is_retried(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(disconnect(), reply("reconnected"))
    with compatible(server, clock) as model:
        assert ask(model).content == "reconnected"
    assert len(server.requests) == 2


def test_connection_refused_gives_up_after_bounded_attempts(clock: FakeClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(
        {"OPENAI_MODEL": "m", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "MODEL_MAX_ATTEMPTS": "3"}
    )
    with (
        build_model_client(settings, sleep=clock.sleep, clock=clock.now) as model,
        pytest.raises(ModelUnavailableError) as raised,
    ):
        ask(model)
    assert "3 attempts" in str(raised.value)
    # the last error names the endpoint and the cause
    assert str(raised.value).endswith(
        f"could not reach model 'm' at http://127.0.0.1:{port}/v1 (ConnectError)"
    )
    assert len(clock.sleeps) == 2


def test_attempt_limit_is_enforced(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(*[error(500, message="upstream broke") for _ in range(6)])
    with (
        compatible(server, clock, MODEL_MAX_ATTEMPTS="3") as model,
        pytest.raises(ModelUnavailableError) as raised,
    ):
        ask(model)
    assert len(server.requests) == 3
    message = str(raised.value)
    assert "3 attempts" in message
    assert "HTTP 500" in message
    assert "upstream broke" in message


def test_total_time_limit_is_enforced(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(*[error(429, retry_after=4) for _ in range(10)])
    env = {"MODEL_MAX_ATTEMPTS": "10", "MODEL_RETRY_MAX_SECONDS": "10"}
    with (
        compatible(server, clock, **env) as model,
        pytest.raises(ModelUnavailableError, match="retry budget"),
    ):
        ask(model)
    assert len(server.requests) == 3
    assert clock.sleeps == [4.0, 4.0]


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (400, "invalid"),
        (401, "OPENAI_API_KEY"),
        (403, "OPENAI_API_KEY"),
        (404, "OPENAI_MODEL"),
        (422, "HTTP 422"),
    ],
)
def test_rejections_are_not_retried(
    server: FakeModelServer, clock: FakeClock, status: int, hint: str
) -> None:
    server.enqueue(error(status, message="nope"))
    with compatible(server, clock) as model, pytest.raises(ModelRejectedError) as raised:
        ask(model)
    assert not isinstance(raised.value, ContentFilteredError)
    assert raised.value.retryable is False
    assert hint in str(raised.value)
    assert len(server.requests) == 1
    assert clock.sleeps == []


def test_azure_content_filter_refusal(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(content_filter())
    with (
        azure(server, clock, AZURE_OPENAI_API_KEY=API_KEY) as model,
        pytest.raises(ContentFilteredError) as raised,
    ):
        ask(model)
    assert raised.value.code == "content_filtered"
    assert str(raised.value) == (
        f"The content filter of Azure OpenAI deployment 'chat-deployment' at {server.root_url} refused the "
        "prompt (HTTP 400); rephrase the message."
    )
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "error_body",
    [
        {"message": "filtered", "code": "content_filter"},  # the code alone
        {"message": "filtered", "code": None, "innererror": {"code": "ResponsibleAIPolicyViolation"}},
    ],
    ids=["code", "innererror"],
)
def test_either_sign_of_the_content_filter_is_enough(
    server: FakeModelServer, clock: FakeClock, error_body: dict[str, Any]
) -> None:
    server.enqueue(error(400, body={"error": error_body}))
    with (
        azure(server, clock, AZURE_OPENAI_API_KEY=API_KEY) as model,
        pytest.raises(ContentFilteredError),
    ):
        ask(model)


def test_a_400_with_another_inner_code_is_a_plain_rejection(
    server: FakeModelServer, clock: FakeClock
) -> None:
    server.enqueue(
        error(400, body={"error": {"message": "no", "code": None, "innererror": {"code": "Other"}}})
    )
    with compatible(server, clock) as model, pytest.raises(ModelRejectedError) as raised:
        ask(model)
    assert not isinstance(raised.value, ContentFilteredError)


def test_filtered_completion_is_a_content_filter_error(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(reply(None, finish_reason="content_filter"))
    with compatible(server, clock) as model, pytest.raises(ContentFilteredError):
        ask(model)
    assert len(server.requests) == 1


def test_empty_reply_cut_by_the_token_limit_is_not_retried(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(reply("", finish_reason="length"))
    with (
        compatible(server, clock) as model,
        pytest.raises(ModelCallError, match="MODEL_MAX_OUTPUT_TOKENS") as raised,
    ):
        ask(model)
    assert len(server.requests) == 1 and raised.value.retryable is False


def test_no_key_token_or_prompt_leaks_into_errors_or_logs(
    server: FakeModelServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.enqueue(
        error(500, message=f"echoing your key {API_KEY} and Bearer {TOKEN}"),
        error(401, message=f"Incorrect API key provided: {API_KEY}"),
    )
    with compatible(server, clock) as model, pytest.raises(ModelRejectedError) as raised:
        ask(model)
    server.enqueue(error(403, message=f"token {TOKEN} lacks the role"))
    with azure(server, clock, FakeCredential()) as model, pytest.raises(ModelRejectedError) as azure_raised:
        ask(model)
    texts = [str(raised.value), str(azure_raised.value), str(raised.value.__cause__)]
    texts += [record.getMessage() for record in caplog.records]
    assert any("attempt 1/5 failed" in text for text in texts)
    for text in texts:
        for secret in (API_KEY, TOKEN, "0123456789abcdef", PROMPT):
            assert secret not in text


def test_azure_entra_id_sends_a_bearer_token_to_the_deployment_path(clock: FakeClock) -> None:
    credential = FakeCredential()
    with FakeModelServer(expected_bearer=TOKEN) as server, azure(server, clock, credential) as model:
        answer = ask(model, "hello azure")
        (request,) = server.requests
    assert answer.content == ECHO_PREFIX + "hello azure"
    assert answer.model == "chat-deployment"
    assert request.path == "/openai/deployments/chat-deployment/chat/completions"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.auth == "bearer"
    assert request.auth_fingerprint == fingerprint(TOKEN)
    assert "api-key" not in request.headers
    assert credential.scopes == [(AZURE_OPENAI_SCOPE,)]


def test_azure_api_key_is_used_when_set(clock: FakeClock) -> None:
    credential = FakeCredential()
    with (
        FakeModelServer(expected_api_key=API_KEY) as server,
        azure(server, clock, credential, AZURE_OPENAI_API_KEY=API_KEY, MODEL_MAX_OUTPUT_TOKENS="32") as model,
    ):
        ask(model)
        (request,) = server.requests
    assert request.auth == "api-key"
    assert request.auth_fingerprint == fingerprint(API_KEY)
    assert request.body["max_completion_tokens"] == 32
    assert credential.scopes == []


def test_azure_rejections_say_what_to_check(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(error(401, code="PermissionDenied"), error(404, code="DeploymentNotFound"))
    with azure(server, clock, FakeCredential(), AZURE_CLIENT_ID="1111-2222") as model:
        with pytest.raises(ModelRejectedError) as unauthorized:
            ask(model)
        with pytest.raises(ModelRejectedError) as missing:
            ask(model)
    assert "Cognitive Services OpenAI User" in str(unauthorized.value)
    assert "1111-2222" in str(unauthorized.value)
    assert "AZURE_OPENAI_DEPLOYMENT" in str(missing.value)
    assert len(server.requests) == 2


def test_missing_credential_is_a_configuration_error(server: FakeModelServer, clock: FakeClock) -> None:
    credential = FakeCredential(failure=CredentialUnavailableError("no identity here"))
    with azure(server, clock, credential) as model, pytest.raises(ConfigurationError) as missing:
        ask(model)
    assert server.requests == []
    assert str(missing.value) == (
        f"No Entra ID credential is available for Azure OpenAI deployment 'chat-deployment' at "
        f"{server.root_url}. On Azure, assign a managed identity to the app (set AZURE_CLIENT_ID for a "
        "user-assigned one); locally, sign in with `az login` or set AZURE_OPENAI_API_KEY."
    )


def test_token_service_failures_are_retried(server: FakeModelServer, clock: FakeClock) -> None:
    credential = FakeCredential(failure=ClientAuthenticationError("IMDS unavailable"))
    with (
        azure(server, clock, credential, MODEL_MAX_ATTEMPTS="2") as model,
        pytest.raises(ModelUnavailableError, match="Entra ID token"),
    ):
        ask(model)
    assert server.requests == []


def test_azure_credential_choice() -> None:
    def cfg(**env: str) -> Any:
        settings = load_settings(
            {"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "d", **env}
        )
        return settings.require_model()

    user_assigned = azure_credential(cfg(AZURE_CLIENT_ID="abc"))
    fallback = azure_credential(cfg())
    try:
        assert isinstance(user_assigned, ManagedIdentityCredential)
        assert isinstance(fallback, DefaultAzureCredential)
    finally:
        user_assigned.close()
        fallback.close()


@pytest.fixture
def model_env(monkeypatch: pytest.MonkeyPatch, server: FakeModelServer) -> Iterator[FakeModelServer]:
    for name in DECLARED_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_MODEL", "shared-model")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    get_settings.cache_clear()
    reset_model_client()
    yield server
    reset_model_client()
    get_settings.cache_clear()


def test_shared_client_is_built_once_and_reused(
    model_env: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[object] = []
    real_build = openai_model.build_model_client

    def counting_build(settings: Any, **kwargs: Any) -> OpenAIChatModel:
        time.sleep(0.05)  # widen the race window
        client = real_build(settings, **kwargs)
        builds.append(client)
        return client

    monkeypatch.setattr(openai_model, "build_model_client", counting_build)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(get_model_client())) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert all(client is builds[0] for client in seen)
    assert get_model_client() is builds[0]
    assert get_model_client().complete([ChatMessage("user", "hi")]).content == ECHO_PREFIX + "hi"
    assert model_env.requests[0].body["model"] == "shared-model"


def test_shared_client_fails_fast_without_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DECLARED_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    reset_model_client()
    try:
        with pytest.raises(ModelNotConfiguredError) as raised:
            get_model_client()
        for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT", "OPENAI_MODEL", "OPENAI_BASE_URL"):
            assert name in str(raised.value)
        assert openai_model._shared is None
    finally:
        get_settings.cache_clear()


def test_api_openai_com_needs_a_key() -> None:
    with pytest.raises(ConfigurationError) as missing:
        build_model_client(load_settings({"OPENAI_MODEL": "gpt"}))
    assert str(missing.value) == (
        "OPENAI_API_KEY is required when OPENAI_BASE_URL is not set (api.openai.com)."
    )


IMPORT_PROBE = """
import openai, azure.identity
def boom(*args, **kwargs):
    raise AssertionError("constructed at import")
for cls in (openai.OpenAI, openai.AzureOpenAI, azure.identity.DefaultAzureCredential,
            azure.identity.ManagedIdentityCredential):
    cls.__init__ = boom
import activities, agent.openai_model, agent.retry
from agent.settings import get_settings
assert agent.openai_model._shared is None
assert get_settings.cache_info().currsize == 0
print("clean")
"""


def test_nothing_is_built_at_import() -> None:
    env = {"OPENAI_MODEL": "m", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "PYTHONPATH": "."}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", IMPORT_PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"


def test_an_injected_token_provider_replaces_the_credential(clock: FakeClock) -> None:
    with FakeModelServer(expected_bearer="provided-token") as server:
        settings = load_settings({"AZURE_OPENAI_ENDPOINT": server.root_url, "AZURE_OPENAI_DEPLOYMENT": "d"})
        with build_model_client(
            settings, token_provider=lambda: "provided-token", sleep=clock.sleep
        ) as model:
            assert ask(model, "x").content == ECHO_PREFIX + "x"
        assert server.requests[0].query == {"api-version": DEFAULT_AZURE_OPENAI_API_VERSION}


def test_reset_closes_the_shared_client(model_env: FakeModelServer) -> None:
    first = get_model_client()
    reset_model_client()
    assert openai_model._shared is None
    assert isinstance(first, OpenAIChatModel)
    assert first._client.is_closed()
    assert get_model_client() is not first


class ClosingCredential(FakeCredential):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_client_closes_the_credential_it_made_and_only_that_one(
    server: FakeModelServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[ClosingCredential] = []

    def new_credential(cfg: Any) -> ClosingCredential:
        assert cfg.deployment == "chat-deployment"  # built for the configured resource
        made.append(ClosingCredential())
        return made[-1]

    monkeypatch.setattr(openai_model, "azure_credential", new_credential)
    server.enqueue(reply("hi"))
    with azure(server, clock) as model:
        assert ask(model).content == "hi"
        assert made[0].scopes == [("https://cognitiveservices.azure.com/.default",)]
        open_while_in_use = not made[0].closed
    assert open_while_in_use and made[0].closed
    given = ClosingCredential()
    with azure(server, clock, credential=given):
        pass
    assert not given.closed and len(made) == 1  # the caller's credential is the caller's to close


def test_usage_counts_the_server_left_out_are_zero(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(reply("ok", usage={"prompt_tokens": 3}))
    with compatible(server, clock) as model:
        usage = ask(model).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 0, 0)
