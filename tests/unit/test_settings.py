"""The typed settings object: provider selection, defaults, fail-fast validation."""

from __future__ import annotations

import pytest

from agent.errors import ConfigurationError, ModelNotConfiguredError
from agent.settings import (
    DECLARED_SETTINGS,
    DEFAULT_AZURE_OPENAI_API_VERSION,
    DEFAULT_SYSTEM_PROMPT,
    AzureOpenAISettings,
    OpenAICompatibleSettings,
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


def test_every_variable_read_is_declared() -> None:
    import inspect

    import agent.settings as module

    source = inspect.getsource(module)
    read = set(__import__("re").findall(r'_(?:text|number)\(env, "([A-Z_]+)"', source))
    assert read <= set(DECLARED_SETTINGS), read - set(DECLARED_SETTINGS)


def test_the_readme_documents_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in DECLARED_SETTINGS if f"`{name}`" not in readme]
    assert missing == [], f"README.md's configuration table lacks {missing}"
