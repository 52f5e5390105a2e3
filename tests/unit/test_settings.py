"""The typed settings object: provider selection, defaults, fail-fast validation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any

import azure.functions as func
import pytest

from agent.errors import ConfigurationError, ModelNotConfiguredError
from agent.settings import (
    DECLARED_SETTINGS,
    DEFAULT_AZURE_OPENAI_API_VERSION,
    DEFAULT_SYSTEM_PROMPT,
    AzureOpenAISettings,
    OpenAICompatibleSettings,
    Settings,
    get_settings,
    load_settings,
)


def test_empty_environment_gives_defaults_and_no_model() -> None:
    settings = load_settings({})
    assert settings.model is None
    assert settings.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert settings.retry.max_attempts == 5
    with pytest.raises(ModelNotConfiguredError, match="AZURE_OPENAI_ENDPOINT") as caught:
        settings.require_model()
    assert "OPENAI_MODEL" in caught.value.message


def test_azure_is_inferred_and_uses_entra_id_without_a_key() -> None:
    settings = load_settings(
        {
            "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
            "AZURE_OPENAI_DEPLOYMENT": "chat",
            "AZURE_CLIENT_ID": "c",
        }
    )
    assert settings.model == AzureOpenAISettings(
        endpoint="https://x.openai.azure.com",
        deployment="chat",
        api_version=DEFAULT_AZURE_OPENAI_API_VERSION,
        api_key=None,
        managed_identity_client_id="c",
    )


def test_openai_compatible_endpoint() -> None:
    settings = load_settings(
        {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "OPENAI_MODEL": "m", "OPENAI_API_KEY": "k"}
    )
    assert settings.model == OpenAICompatibleSettings(
        base_url="http://127.0.0.1:1/v1", api_key="k", model="m"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AZURE_OPENAI_ENDPOINT": "https://x"}, "AZURE_OPENAI_DEPLOYMENT"),
        ({"AZURE_OPENAI_ENDPOINT": "x.azure.com", "AZURE_OPENAI_DEPLOYMENT": "d"}, "http"),
        ({"OPENAI_BASE_URL": "http://h/v1"}, "OPENAI_MODEL"),
        ({"MODEL_PROVIDER": "bedrock"}, "MODEL_PROVIDER"),
        ({"MODEL_MAX_ATTEMPTS": "many"}, "MODEL_MAX_ATTEMPTS"),
        ({"MODEL_MAX_ATTEMPTS": "0"}, "out of range"),
        ({"CONTEXT_WINDOW_BYTES": "10"}, "CONTEXT_WINDOW_BYTES"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(env)


def test_principal_header_trust_is_an_explicit_boolean() -> None:
    assert load_settings({}).trust_client_principal_header is False
    assert load_settings({"TRUST_CLIENT_PRINCIPAL_HEADER": "true"}).trust_client_principal_header is True
    with pytest.raises(ConfigurationError, match="TRUST_CLIENT_PRINCIPAL_HEADER"):
        load_settings({"TRUST_CLIENT_PRINCIPAL_HEADER": "maybe"})


class RecordingEnv(Mapping[str, str]):
    """An environment that logs every name asked for, however it is asked (get, [], in)."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        # Listing the environment would read names nobody declared; settings ask by name.
        raise AssertionError("load_settings iterated the environment instead of asking for names")

    def __len__(self) -> int:
        return len(self._values)


# Environments that between them take every branch of load_settings: no model, each
# provider fully set, each auth mode, and every optional number present.
BRANCH_ENVIRONMENTS: list[dict[str, str]] = [
    {},
    {
        "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
        "AZURE_OPENAI_DEPLOYMENT": "chat",
        "AZURE_OPENAI_API_VERSION": "2025-01-01",
        "AZURE_OPENAI_API_KEY": "k",
        "AZURE_CLIENT_ID": "c",
        "TRUST_CLIENT_PRINCIPAL_HEADER": "true",
    },
    {
        "MODEL_PROVIDER": "openai",
        "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
        "OPENAI_MODEL": "m",
        "OPENAI_API_KEY": "k",
        "MODEL_MAX_OUTPUT_TOKENS": "100",
        "THREAD_RETENTION_DAYS": "30",
        "AUTH_MODE": "entra",
        "AUTH_TENANT_ID": "t",
        "AUTH_AUDIENCE": "api://a",
        "AUTH_ISSUER": "https://issuer",
        "AUTH_JWKS_URL": "https://keys",
    },
]


def _names_read() -> set[str]:
    asked: set[str] = set()
    for values in BRANCH_ENVIRONMENTS:
        env = RecordingEnv(values)
        load_settings(env)
        asked |= env.asked
    return asked


def test_every_variable_read_is_declared() -> None:
    # Every read counts, through whichever helper (_text, _number, _flag, or one added later).
    undeclared = _names_read() - set(DECLARED_SETTINGS)
    assert undeclared == set(), f"load_settings reads {sorted(undeclared)} but DECLARED_SETTINGS lacks them"


def test_every_declared_variable_is_read() -> None:
    # A declared name nothing reads is a setting the README documents and Bicep sets in vain.
    unread = set(DECLARED_SETTINGS) - _names_read()
    assert unread == set(), f"DECLARED_SETTINGS has {sorted(unread)} but load_settings never reads them"


@pytest.mark.parametrize(
    "env",
    [
        {},
        # credentials, prompts and tuning alone do not make a model
        {"OPENAI_API_KEY": "k", "AZURE_OPENAI_API_KEY": "k", "AZURE_CLIENT_ID": "c"},
        {"AZURE_OPENAI_API_VERSION": "2025-01-01", "SYSTEM_PROMPT": "hi", "MODEL_TIMEOUT_SECONDS": "5"},
        # blank values count as unset (Bicep and local.settings.json write empty strings)
        {"AZURE_OPENAI_ENDPOINT": " ", "AZURE_OPENAI_DEPLOYMENT": "", "OPENAI_MODEL": ""},
        {"MODEL_PROVIDER": " ", "OPENAI_BASE_URL": ""},
    ],
)
def test_without_a_model_no_model_is_configured(env: dict[str, str]) -> None:
    # What GET /api/health reports as model_configured (see test_health_reports_model_configured).
    assert load_settings(env).model is None


def _health_handler() -> Callable[..., Coroutine[Any, Any, func.HttpResponse]]:
    import azure.durable_functions as df

    import http_api

    app = df.DFApp()
    app.register_functions(http_api.bp)
    (function,) = [f for f in app.get_functions() if f.get_function_name() == "health"]
    handler: Callable[..., Coroutine[Any, Any, func.HttpResponse]] = function.get_user_function()
    return handler


@pytest.mark.parametrize(
    ("env", "configured"),
    [
        ({}, False),
        ({"OPENAI_API_KEY": "k", "AZURE_CLIENT_ID": "c"}, False),
        ({"OPENAI_MODEL": "m", "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}, True),
        ({"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "d"}, True),
    ],
)
def test_health_reports_model_configured(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], configured: bool
) -> None:
    """README: "without a model, health says model_configured: false" (and true with one)."""
    for name in DECLARED_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        request = func.HttpRequest("GET", "http://localhost/api/health", body=b"")
        response = asyncio.run(_health_handler()(req=request))
    finally:
        get_settings.cache_clear()
    assert response.status_code == 200
    # Only the promise under test: the status wording is the HTTP API's own business.
    assert json.loads(response.get_body())["model_configured"] is configured


def test_the_readme_documents_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in DECLARED_SETTINGS if f"`{name}`" not in readme]
    assert missing == [], f"README.md's configuration table lacks {missing}"


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("no", False)]
)
def test_boolean_settings_accept_every_documented_form(raw: str, expected: bool) -> None:
    assert load_settings({"TRUST_CLIENT_PRINCIPAL_HEADER": raw}).trust_client_principal_header is expected


def test_the_model_is_described_without_keys_or_full_urls() -> None:
    from agent.settings import describe_model

    azure = load_settings(
        {"AZURE_OPENAI_ENDPOINT": "https://acme.openai.azure.com/x", "AZURE_OPENAI_DEPLOYMENT": "d1"}
    ).model
    assert azure is not None
    assert describe_model(azure) == "Azure OpenAI deployment d1 at acme.openai.azure.com (Entra ID)"
    keyed = load_settings(
        {
            "AZURE_OPENAI_ENDPOINT": "https://a.b",
            "AZURE_OPENAI_DEPLOYMENT": "d",
            "AZURE_OPENAI_API_KEY": "k" * 20,
        }
    ).model
    assert (
        keyed is not None
        and describe_model(keyed).endswith("(API key)")
        and "k" * 20 not in describe_model(keyed)
    )
    local = load_settings({"OPENAI_MODEL": "m", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}).model
    assert local is not None and describe_model(local) == "OpenAI-compatible model m at 127.0.0.1:9"
    public = load_settings({"OPENAI_MODEL": "m"}).model
    assert public is not None and "OPENAI_BASE_URL unset" in describe_model(public)


# Each number setting: (variable, where it lands, default, lowest, highest, a step past the edge).
NUMBERS: list[tuple[str, Callable[[Settings], object], float, float, float, float]] = [
    ("PAYLOAD_CAP_BYTES", lambda s: s.payload_cap_bytes, 256 * 1024, 64 * 1024, 4 * 1024 * 1024, 1),
    ("REPLY_POLL_INITIAL_MS", lambda s: s.reply_poll_initial_ms, 20, 1, 60_000, 1),
    ("REPLY_POLL_MAX_MS", lambda s: s.reply_poll_max_ms, 500, 1, 60_000, 1),
    ("MODEL_TIMEOUT_SECONDS", lambda s: s.retry.timeout_seconds, 60.0, 0.1, 600.0, 0.01),
    ("MODEL_MAX_ATTEMPTS", lambda s: s.retry.max_attempts, 5, 1, 20, 1),
    ("MODEL_RETRY_MAX_SECONDS", lambda s: s.retry.max_total_seconds, 120.0, 0.1, 1800.0, 0.01),
    ("THREAD_RETENTION_DAYS", lambda s: s.thread_retention_days, 0, 0.000001, 36_500.0, 0.0000005),
    ("MAINTENANCE_INTERVAL_SECONDS", lambda s: s.maintenance_interval_seconds, 3600.0, 0.5, 86_400.0, 0.1),
    ("RATE_LIMIT_MESSAGES_PER_MINUTE", lambda s: s.limits.messages_per_minute, 60, 0, 1_000_000, 1),
    ("RATE_LIMIT_THREADS_PER_PRINCIPAL", lambda s: s.limits.threads_per_principal, 1000, 0, 10_000_000, 1),
    ("RATE_LIMIT_TOKENS_PER_DAY", lambda s: s.limits.tokens_per_day, 0, 0, 10_000_000_000, 1),
    ("APPROVAL_TIMEOUT_SECONDS", lambda s: s.approval_timeout_seconds, 86_400.0, 1.0, 30 * 86_400.0, 0.5),
    ("MAX_TOOL_ROUNDS", lambda s: s.max_tool_rounds, 8, 1, 50, 1),
    ("MODEL_MAX_OUTPUT_TOKENS", lambda s: s.max_output_tokens, 0, 1, 32_768, 1),
]


def _text_of(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


#: what each setting's edges need from the others (a small cap needs a small window; the
#: poll intervals must stay ordered)
COMPANIONS = {
    "PAYLOAD_CAP_BYTES": {"CONTEXT_WINDOW_BYTES": "1000"},
    "REPLY_POLL_INITIAL_MS": {"REPLY_POLL_MAX_MS": "60000"},
    "REPLY_POLL_MAX_MS": {"REPLY_POLL_INITIAL_MS": "1"},
}


@pytest.mark.parametrize(
    ("name", "read", "default", "low", "high", "step"), NUMBERS, ids=[n[0] for n in NUMBERS]
)
def test_number_settings_have_their_default_and_exact_range(
    name: str, read: Callable[[Settings], object], default: float, low: float, high: float, step: float
) -> None:
    if name not in ("THREAD_RETENTION_DAYS", "MODEL_MAX_OUTPUT_TOKENS"):  # those are off unless set
        assert read(load_settings({})) == default
    others = COMPANIONS.get(name, {})
    assert read(load_settings({**others, name: _text_of(low)})) == low
    assert read(load_settings({**others, name: _text_of(high)})) == high
    for outside in (low - step, high + step):
        with pytest.raises(ConfigurationError, match=rf"^{name}=\S+ is out of range; use "):
            load_settings({**others, name: _text_of(outside)})


def test_context_window_limits_follow_the_payload_cap() -> None:
    assert load_settings({"CONTEXT_WINDOW_BYTES": "1000"}).context_window_bytes == 1000
    with pytest.raises(ConfigurationError, match=r"^CONTEXT_WINDOW_BYTES=999 is out of range"):
        load_settings({"CONTEXT_WINDOW_BYTES": "999"})
    room = 256 * 1024 - 16 * 1024 - 16 * 1024  # the cap less the request overhead and the prompt
    assert load_settings({"CONTEXT_WINDOW_BYTES": str(room)}).context_window_bytes == room
    with pytest.raises(ConfigurationError) as too_big:
        load_settings({"CONTEXT_WINDOW_BYTES": str(room + 1)})
    assert too_big.value.message == (
        f"CONTEXT_WINDOW_BYTES={room + 1} does not fit PAYLOAD_CAP_BYTES={256 * 1024}; use at most "
        f"{room} or raise PAYLOAD_CAP_BYTES."
    )
    big = {"PAYLOAD_CAP_BYTES": str(4 * 1024 * 1024), "CONTEXT_WINDOW_BYTES": "4000000"}
    assert load_settings(big).context_window_bytes == 4_000_000


def test_the_poll_ceiling_may_not_be_below_the_first_interval() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"REPLY_POLL_INITIAL_MS": "300", "REPLY_POLL_MAX_MS": "200"})
    assert caught.value.message == "REPLY_POLL_MAX_MS=200 is below REPLY_POLL_INITIAL_MS=300; raise it."
    assert (
        load_settings({"REPLY_POLL_INITIAL_MS": "300", "REPLY_POLL_MAX_MS": "300"}).reply_poll_max_ms == 300
    )


@pytest.mark.parametrize("name", ["AUTH_ISSUER", "AUTH_JWKS_URL"])
def test_auth_urls_must_be_http_urls_and_are_named(name: str) -> None:
    env = {"AUTH_MODE": "entra", "AUTH_TENANT_ID": "t", "AUTH_AUDIENCE": "api://x", name: "ftp://nope"}
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env)
    assert caught.value.message == f"{name}='ftp://nope' must be an http(s) URL."
