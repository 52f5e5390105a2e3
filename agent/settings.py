"""The app's one typed settings object, read from the environment once.

Every environment variable the app code reads is declared in `DECLARED_SETTINGS`; the
infrastructure test checks that Bicep sets exactly these. Invalid values fail fast with a
message that names the variable and what it should hold. A missing model is not an error
here: the app still serves threads, and each turn fails with `ModelNotConfiguredError`
saying which variables to set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from agent.errors import ConfigurationError, ModelNotConfiguredError

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
DEFAULT_AZURE_OPENAI_API_VERSION = "2024-10-21"

# name -> what it is for (the README's configuration table is written from this).
DECLARED_SETTINGS: dict[str, str] = {
    "MODEL_PROVIDER": "`azure` or `openai`; inferred from the other settings when unset",
    "AZURE_OPENAI_ENDPOINT": "Azure OpenAI endpoint, e.g. https://NAME.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENT": "Azure OpenAI chat deployment name",
    "AZURE_OPENAI_API_VERSION": f"Azure OpenAI API version (default {DEFAULT_AZURE_OPENAI_API_VERSION})",
    "AZURE_OPENAI_API_KEY": "opt-in key for local use; unset means Entra ID (managed identity)",
    "AZURE_CLIENT_ID": "client id of the user-assigned managed identity to authenticate with",
    "OPENAI_BASE_URL": "any OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1",
    "OPENAI_API_KEY": "key for OPENAI_BASE_URL (optional for local servers)",
    "OPENAI_MODEL": "model name for OPENAI_BASE_URL",
    "SYSTEM_PROMPT": "system prompt for new threads (default: a helpful assistant)",
    "MODEL_TIMEOUT_SECONDS": "timeout of one model request (default 60)",
    "MODEL_MAX_ATTEMPTS": "attempts per turn for transient model errors (default 5)",
    "MODEL_RETRY_MAX_SECONDS": "total time a turn may spend retrying the model (default 120)",
    "MODEL_MAX_OUTPUT_TOKENS": "cap on reply tokens (default: the model's own)",
    "CONTEXT_WINDOW_BYTES": "bytes of history sent to the model per turn (default 48000)",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "turns on OpenTelemetry export to Application Insights",
    "TRUST_CLIENT_PRINCIPAL_HEADER": (
        "`true` behind App Service Authentication: threads belong to the signed-in principal"
    ),
}

ProviderName = Literal["azure", "openai"]


@dataclass(frozen=True)
class AzureOpenAISettings:
    endpoint: str
    deployment: str
    api_version: str
    api_key: str | None
    managed_identity_client_id: str | None


@dataclass(frozen=True)
class OpenAICompatibleSettings:
    base_url: str | None
    api_key: str | None
    model: str


@dataclass(frozen=True)
class RetrySettings:
    timeout_seconds: float = 60.0
    max_attempts: int = 5
    max_total_seconds: float = 120.0


@dataclass(frozen=True)
class Settings:
    model: AzureOpenAISettings | OpenAICompatibleSettings | None
    system_prompt: str
    retry: RetrySettings
    max_output_tokens: int | None
    context_window_bytes: int
    applicationinsights_connection_string: str | None
    trust_client_principal_header: bool = False

    def require_model(self) -> AzureOpenAISettings | OpenAICompatibleSettings:
        if self.model is None:
            raise ModelNotConfiguredError(
                "No model is configured. Set AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT "
                "(Azure OpenAI, Entra ID auth), or OPENAI_MODEL with OPENAI_BASE_URL and "
                "OPENAI_API_KEY (any OpenAI-compatible endpoint)."
            )
        return self.model


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _number[N: (int, float)](
    env: Mapping[str, str], name: str, kind: type[N], default: N, low: N, high: N
) -> N:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a {kind.__name__}; set a number.") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name}={raw} is out of range; use {low} to {high}.")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (_text(env, name) or "false").lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigurationError(f"{name}={raw!r} is not a boolean; use true or false.")
    return raw in ("true", "1", "yes")


def _model_settings(env: Mapping[str, str]) -> AzureOpenAISettings | OpenAICompatibleSettings | None:
    provider = _text(env, "MODEL_PROVIDER")
    if provider is not None and provider.lower() not in ("azure", "openai"):
        raise ConfigurationError(f"MODEL_PROVIDER={provider!r} is not supported; use 'azure' or 'openai'.")
    if provider is None:
        if _text(env, "AZURE_OPENAI_ENDPOINT") or _text(env, "AZURE_OPENAI_DEPLOYMENT"):
            provider = "azure"
        elif _text(env, "OPENAI_MODEL") or _text(env, "OPENAI_BASE_URL"):
            provider = "openai"
        else:
            return None
    if provider.lower() == "azure":
        endpoint = _text(env, "AZURE_OPENAI_ENDPOINT")
        deployment = _text(env, "AZURE_OPENAI_DEPLOYMENT")
        missing = [
            n
            for n, v in (("AZURE_OPENAI_ENDPOINT", endpoint), ("AZURE_OPENAI_DEPLOYMENT", deployment))
            if not v
        ]
        if missing or endpoint is None or deployment is None:
            raise ConfigurationError(f"Azure OpenAI needs {' and '.join(missing)} to be set.")
        if not endpoint.startswith(("https://", "http://")):
            raise ConfigurationError(f"AZURE_OPENAI_ENDPOINT={endpoint!r} must be an http(s) URL.")
        return AzureOpenAISettings(
            endpoint=endpoint,
            deployment=deployment,
            api_version=_text(env, "AZURE_OPENAI_API_VERSION") or DEFAULT_AZURE_OPENAI_API_VERSION,
            api_key=_text(env, "AZURE_OPENAI_API_KEY"),
            managed_identity_client_id=_text(env, "AZURE_CLIENT_ID"),
        )
    model = _text(env, "OPENAI_MODEL")
    if model is None:
        raise ConfigurationError("An OpenAI-compatible endpoint needs OPENAI_MODEL to be set.")
    base_url = _text(env, "OPENAI_BASE_URL")
    if base_url is not None and not base_url.startswith(("https://", "http://")):
        raise ConfigurationError(f"OPENAI_BASE_URL={base_url!r} must be an http(s) URL.")
    return OpenAICompatibleSettings(base_url=base_url, api_key=_text(env, "OPENAI_API_KEY"), model=model)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build settings from an environment mapping; raises ConfigurationError on bad values."""
    max_tokens_raw = _text(env, "MODEL_MAX_OUTPUT_TOKENS")
    return Settings(
        model=_model_settings(env),
        system_prompt=_text(env, "SYSTEM_PROMPT") or DEFAULT_SYSTEM_PROMPT,
        retry=RetrySettings(
            timeout_seconds=_number(env, "MODEL_TIMEOUT_SECONDS", float, 60.0, 0.1, 600.0),
            max_attempts=_number(env, "MODEL_MAX_ATTEMPTS", int, 5, 1, 20),
            max_total_seconds=_number(env, "MODEL_RETRY_MAX_SECONDS", float, 120.0, 0.1, 1800.0),
        ),
        max_output_tokens=(
            None if max_tokens_raw is None else _number(env, "MODEL_MAX_OUTPUT_TOKENS", int, 0, 1, 1_000_000)
        ),
        context_window_bytes=_number(env, "CONTEXT_WINDOW_BYTES", int, 48_000, 1_000, 10_000_000),
        applicationinsights_connection_string=_text(env, "APPLICATIONINSIGHTS_CONNECTION_STRING"),
        trust_client_principal_header=_flag(env, "TRUST_CLIENT_PRINCIPAL_HEADER"),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, loaded on first use (never at import) and then reused."""
    return load_settings(os.environ)
