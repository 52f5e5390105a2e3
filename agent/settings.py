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
DEFAULT_AZURE_OPENAI_API_VERSION = "2025-04-01-preview"

# name -> what it is for (the README's configuration table is written from this).
DECLARED_SETTINGS: dict[str, str] = {
    "MODEL_PROVIDER": "`azure` or `openai`; inferred from the other settings when unset",
    "AZURE_OPENAI_ENDPOINT": "Azure OpenAI endpoint, e.g. https://NAME.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENT": "Azure OpenAI chat deployment name",
    "AZURE_OPENAI_API_VERSION": f"Azure OpenAI API version (default {DEFAULT_AZURE_OPENAI_API_VERSION})",
    "AZURE_OPENAI_API_KEY": "opt-in key for local use; unset means Entra ID (managed identity)",
    "AZURE_CLIENT_ID": "client id of the user-assigned managed identity to authenticate with",
    "OPENAI_BASE_URL": "any OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1 (unset: OpenAI's API)",
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
        "`true` behind App Service Authentication: threads belong to the signed-in principal "
        "(same as AUTH_MODE=app_service)"
    ),
    "AUTH_MODE": (
        "`none` (default), `app_service` (trust X-MS-CLIENT-PRINCIPAL-ID from App Service "
        "Authentication) or `entra` (validate the Bearer token in the app)"
    ),
    "AUTH_TENANT_ID": "Entra ID tenant whose tokens AUTH_MODE=entra accepts",
    "AUTH_AUDIENCE": "accepted token audiences for AUTH_MODE=entra, comma-separated (e.g. api://CLIENT_ID)",
    "AUTH_ISSUER": "accepted token issuer (default: the tenant's v2.0 and v1 issuers)",
    "AUTH_JWKS_URL": "signing keys URL (default: the tenant's published keys)",
    "PAYLOAD_CAP_BYTES": "largest stored value or durable message the app writes (default 262144)",
    "THREAD_RETENTION_DAYS": "delete threads idle for longer than this many days (default: keep forever)",
    "MAINTENANCE_INTERVAL_SECONDS": "how often the maintenance orchestration sweeps (default 3600)",
    "REPLY_POLL_INITIAL_MS": "first interval when a ?wait request polls for its reply (default 20)",
    "REPLY_POLL_MAX_MS": "longest interval between those polls (default 500)",
    "RATE_LIMIT_MESSAGES_PER_MINUTE": "messages one caller may send per minute (default 60; 0 = no limit)",
    "RATE_LIMIT_THREADS_PER_PRINCIPAL": "threads one caller may own (default 1000; 0 = no limit)",
    "RATE_LIMIT_TOKENS_PER_DAY": "model tokens one caller may use per UTC day (default 0 = no limit)",
    "APPROVAL_TIMEOUT_SECONDS": "how long a tool call waits for a person's approval (default 86400)",
    "MAX_TOOL_ROUNDS": "model/tool rounds per turn before the turn ends (default 8)",
}

AuthMode = Literal["none", "app_service", "entra"]
MIN_PAYLOAD_CAP_BYTES = 64 * 1024
MAX_SYSTEM_PROMPT_BYTES = 16 * 1024
# Room in the model activity's input for everything but the window (ids, agent, tools).
REQUEST_OVERHEAD_BYTES = 16 * 1024

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
class AuthSettings:
    mode: AuthMode = "none"
    tenant_id: str | None = None
    audiences: tuple[str, ...] = ()
    issuer: str | None = None
    jwks_url: str | None = None


@dataclass(frozen=True)
class LimitSettings:
    messages_per_minute: int = 60
    threads_per_principal: int = 1000
    tokens_per_day: int = 0


@dataclass(frozen=True)
class Settings:
    model: AzureOpenAISettings | OpenAICompatibleSettings | None
    system_prompt: str
    retry: RetrySettings
    max_output_tokens: int | None
    context_window_bytes: int
    applicationinsights_connection_string: str | None
    trust_client_principal_header: bool = False
    auth: AuthSettings = AuthSettings()
    payload_cap_bytes: int = 256 * 1024
    thread_retention_days: float | None = None
    maintenance_interval_seconds: float = 3600.0
    reply_poll_initial_ms: int = 20
    reply_poll_max_ms: int = 500
    limits: LimitSettings = LimitSettings()
    approval_timeout_seconds: float = 86400.0
    max_tool_rounds: int = 8

    def require_model(self) -> AzureOpenAISettings | OpenAICompatibleSettings:
        if self.model is None:
            raise ModelNotConfiguredError(
                "No model is configured. Set AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT "
                "(Azure OpenAI, Entra ID auth), or OPENAI_MODEL (with OPENAI_BASE_URL for any "
                "OpenAI-compatible server, and OPENAI_API_KEY if it needs one)."
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


def _auth_settings(env: Mapping[str, str]) -> AuthSettings:
    trust_header = _flag(env, "TRUST_CLIENT_PRINCIPAL_HEADER")
    raw_mode = (_text(env, "AUTH_MODE") or ("app_service" if trust_header else "none")).lower()
    if raw_mode not in ("none", "app_service", "entra"):
        raise ConfigurationError(f"AUTH_MODE={raw_mode!r} is not supported; use none, app_service or entra.")
    if trust_header and raw_mode != "app_service":
        raise ConfigurationError(
            f"TRUST_CLIENT_PRINCIPAL_HEADER=true contradicts AUTH_MODE={raw_mode}; unset one of them."
        )
    mode: AuthMode = (
        "entra" if raw_mode == "entra" else "app_service" if raw_mode == "app_service" else "none"
    )
    tenant = _text(env, "AUTH_TENANT_ID")
    audiences = tuple(a.strip() for a in (_text(env, "AUTH_AUDIENCE") or "").split(",") if a.strip())
    issuer = _text(env, "AUTH_ISSUER")
    jwks_url = _text(env, "AUTH_JWKS_URL")
    if mode == "entra":
        missing = [n for n, v in (("AUTH_TENANT_ID", tenant), ("AUTH_AUDIENCE", audiences)) if not v]
        if missing:
            raise ConfigurationError(f"AUTH_MODE=entra needs {' and '.join(missing)} to be set.")
        for name, url in (("AUTH_ISSUER", issuer), ("AUTH_JWKS_URL", jwks_url)):
            if url is not None and not url.startswith(("https://", "http://")):
                raise ConfigurationError(f"{name}={url!r} must be an http(s) URL.")
    return AuthSettings(mode=mode, tenant_id=tenant, audiences=audiences, issuer=issuer, jwks_url=jwks_url)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build settings from an environment mapping; raises ConfigurationError on bad values."""
    max_tokens_raw = _text(env, "MODEL_MAX_OUTPUT_TOKENS")
    cap = _number(env, "PAYLOAD_CAP_BYTES", int, 256 * 1024, MIN_PAYLOAD_CAP_BYTES, 4 * 1024 * 1024)
    system_prompt = _text(env, "SYSTEM_PROMPT") or DEFAULT_SYSTEM_PROMPT
    if len(system_prompt.encode("utf-8", errors="replace")) > MAX_SYSTEM_PROMPT_BYTES:
        raise ConfigurationError(f"SYSTEM_PROMPT is longer than {MAX_SYSTEM_PROMPT_BYTES} bytes; shorten it.")
    window = _number(env, "CONTEXT_WINDOW_BYTES", int, 48_000, 1_000, 10_000_000)
    if window > cap - REQUEST_OVERHEAD_BYTES - MAX_SYSTEM_PROMPT_BYTES:
        raise ConfigurationError(
            f"CONTEXT_WINDOW_BYTES={window} does not fit PAYLOAD_CAP_BYTES={cap}; use at most "
            f"{cap - REQUEST_OVERHEAD_BYTES - MAX_SYSTEM_PROMPT_BYTES} or raise PAYLOAD_CAP_BYTES."
        )
    retention_raw = _text(env, "THREAD_RETENTION_DAYS")
    poll_initial = _number(env, "REPLY_POLL_INITIAL_MS", int, 20, 1, 60_000)
    poll_max = _number(env, "REPLY_POLL_MAX_MS", int, 500, 1, 60_000)
    if poll_max < poll_initial:
        raise ConfigurationError(
            f"REPLY_POLL_MAX_MS={poll_max} is below REPLY_POLL_INITIAL_MS={poll_initial}; raise it."
        )
    return Settings(
        model=_model_settings(env),
        system_prompt=system_prompt,
        retry=RetrySettings(
            timeout_seconds=_number(env, "MODEL_TIMEOUT_SECONDS", float, 60.0, 0.1, 600.0),
            max_attempts=_number(env, "MODEL_MAX_ATTEMPTS", int, 5, 1, 20),
            max_total_seconds=_number(env, "MODEL_RETRY_MAX_SECONDS", float, 120.0, 0.1, 1800.0),
        ),
        max_output_tokens=(
            None if max_tokens_raw is None else _number(env, "MODEL_MAX_OUTPUT_TOKENS", int, 0, 1, 32_768)
        ),
        context_window_bytes=window,
        applicationinsights_connection_string=_text(env, "APPLICATIONINSIGHTS_CONNECTION_STRING"),
        trust_client_principal_header=_flag(env, "TRUST_CLIENT_PRINCIPAL_HEADER"),
        auth=_auth_settings(env),
        payload_cap_bytes=cap,
        thread_retention_days=(
            None
            if retention_raw is None
            else _number(env, "THREAD_RETENTION_DAYS", float, 0.0, 0.000001, 36_500.0)
        ),
        maintenance_interval_seconds=_number(
            env, "MAINTENANCE_INTERVAL_SECONDS", float, 3600.0, 0.5, 86_400.0
        ),
        reply_poll_initial_ms=poll_initial,
        reply_poll_max_ms=poll_max,
        limits=LimitSettings(
            messages_per_minute=_number(env, "RATE_LIMIT_MESSAGES_PER_MINUTE", int, 60, 0, 1_000_000),
            threads_per_principal=_number(env, "RATE_LIMIT_THREADS_PER_PRINCIPAL", int, 1000, 0, 10_000_000),
            tokens_per_day=_number(env, "RATE_LIMIT_TOKENS_PER_DAY", int, 0, 0, 10_000_000_000),
        ),
        approval_timeout_seconds=_number(
            env, "APPROVAL_TIMEOUT_SECONDS", float, 86_400.0, 1.0, 30 * 86_400.0
        ),
        max_tool_rounds=_number(env, "MAX_TOOL_ROUNDS", int, 8, 1, 50),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, loaded on first use (never at import) and then reused."""
    return load_settings(os.environ)


def describe_model(model: AzureOpenAISettings | OpenAICompatibleSettings) -> str:
    """One line naming the configured model, without keys or full URLs."""
    from urllib.parse import urlsplit

    if isinstance(model, AzureOpenAISettings):
        auth = "API key" if model.api_key else "Entra ID"
        return f"Azure OpenAI deployment {model.deployment} at {urlsplit(model.endpoint).hostname} ({auth})"
    host = urlsplit(model.base_url).netloc if model.base_url else "api.openai.com (OPENAI_BASE_URL unset)"
    return f"OpenAI-compatible model {model.model} at {host}"
