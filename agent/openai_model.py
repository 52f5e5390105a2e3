"""The real model client: chat completions over the openai SDK, Azure OpenAI or any compatible endpoint.

`OpenAIChatModel` sends one chat completion per `complete()` call with the SDK's own retries
off (`max_retries=0`); `agent.retry.RetryPolicy` decides what is retried. `ModelOptions`
offer an agent's tools (`tool_choice` auto) and override the model (on Azure: the
deployment, which the SDK puts in the path), temperature and output limit per call; the
reply's `message.tool_calls` come back as plain dicts with the arguments as the raw JSON
text the model wrote (checking them is the `run_tool` activity's job). Each failure is
translated into the app's errors: transient ones (408/409/429/5xx, timeouts, connection
errors, malformed or empty bodies) into `TransientModelError` for the policy, rejections
(400/401/403/404) into `ModelRejectedError` with a hint a person can act on, Azure content
filter refusals into `ContentFilteredError`. Messages never carry keys or tokens, nor prompt
text.

`build_model_client(settings)` picks Azure OpenAI (Entra ID through a managed identity or
DefaultAzureCredential, or an API key when one is set) or an OpenAI-compatible endpoint.
`get_model_client()` builds the process-wide client on first use and reuses it.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, Self

import httpx2
import openai
from azure.core.credentials import TokenProvider
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    CredentialUnavailableError,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    get_bearer_token_provider,
)
from openai.types.chat import ChatCompletionMessageParam

from agent.errors import ConfigurationError, ContentFilteredError, ModelCallError, ModelRejectedError
from agent.model import ChatMessage, ModelClient, ModelOptions, ModelReply, Usage
from agent.retry import RetryPolicy, TransientModelError, is_transient_status, retry_after_seconds
from agent.settings import AzureOpenAISettings, OpenAICompatibleSettings, Settings, get_settings

AZURE_OPENAI_SCOPE = "https://cognitiveservices.azure.com/.default"
# The openai client insists on some key; local OpenAI-compatible servers ignore it.
PLACEHOLDER_API_KEY = "no-key-configured"

OutputLimitParam = Literal["max_completion_tokens", "max_tokens"]

_SECRET_PATTERNS = (
    re.compile(r"(?i)\bbearer\s+\S+"),
    re.compile(r"\beyJ[\w-]{4,}\.[\w-]*\.?[\w-]*"),  # JWTs
    re.compile(r"\bsk-[\w*.-]{4,}"),  # OpenAI-style keys, even masked ones
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets and anything shaped like a key or token removed."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


class OpenAIChatModel:
    """`ModelClient` over an `openai.OpenAI` (or `AzureOpenAI`) client; safe to share between threads."""

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        model: str,
        policy: RetryPolicy,
        target: str,
        hints: Mapping[int, str] | None = None,
        max_output_tokens: int | None = None,
        limit_param: OutputLimitParam = "max_completion_tokens",
        secrets: Iterable[str] = (),
        on_close: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.model = model
        self.policy = policy
        self.target = target
        self._hints = dict(hints or {})
        self._max_output_tokens = max_output_tokens
        self._limit_param = limit_param
        self._secrets = tuple(s for s in secrets if s)
        self._on_close = on_close
        self._clock = clock

    def complete(self, messages: list[ChatMessage], options: ModelOptions | None = None) -> ModelReply:
        """One chat completion, retried per the policy; `latency_ms` is the answering request's.

        `options` offers tools (`tool_choice` auto) and overrides the model, temperature and
        output limit for this call."""
        payload: list[ChatCompletionMessageParam] = [_message_param(m) for m in messages]
        extra = self._options(options or ModelOptions())
        return self.policy.call(
            lambda timeout: self._attempt(payload, extra, timeout), what=f"chat completion ({self.target})"
        )

    def _options(self, options: ModelOptions) -> dict[str, Any]:
        extra: dict[str, Any] = {"model": options.model or self.model}
        limit = (
            options.max_output_tokens if options.max_output_tokens is not None else self._max_output_tokens
        )
        if limit is not None:
            extra[self._limit_param] = limit
        if options.temperature is not None:
            extra["temperature"] = options.temperature
        if options.tools:
            extra["tools"] = [dict(t) for t in options.tools]
            extra["tool_choice"] = "auto"
        return extra

    def _attempt(
        self, payload: list[ChatCompletionMessageParam], extra: dict[str, Any], timeout: float
    ) -> ModelReply:
        started = self._clock()
        try:
            # The SDK's low-level `post` (its documented way to send a request as built):
            # the typed `create()` walks the whole body through its parameter transform, a
            # few ms per request for a long window, and our dicts are already in wire form.
            # Auth, Azure's /deployments/{model} routing and status errors are the same.
            http = self._client.post(
                "/chat/completions",
                body={"messages": payload, **extra},
                cast_to=httpx2.Response,
                options={"timeout": timeout},
            )
        except openai.APIStatusError as failure:
            raise self._status_error(failure) from None
        except openai.APITimeoutError:
            raise TransientModelError(f"request to {self.target} timed out after {timeout:.1f}s") from None
        except openai.APIConnectionError as failure:
            cause = type(failure.__cause__).__name__ if failure.__cause__ else "connection error"
            raise TransientModelError(f"could not reach {self.target} ({cause})") from None
        except CredentialUnavailableError:
            raise ConfigurationError(
                f"No Entra ID credential is available for {self.target}. On Azure, assign a managed "
                "identity to the app (set AZURE_CLIENT_ID for a user-assigned one); locally, sign in "
                "with `az login` or set AZURE_OPENAI_API_KEY."
            ) from None
        except ClientAuthenticationError as failure:
            raise TransientModelError(
                f"could not get an Entra ID token for {self.target} ({type(failure).__name__})"
            ) from None
        latency_ms = round((self._clock() - started) * 1000)
        try:
            data = http.json()
        except ValueError:
            content_type = http.headers.get("content-type", "none")
            raise TransientModelError(
                f"{self.target} answered HTTP {http.status_code} with a body that is not JSON "
                f"(content-type {content_type})"
            ) from None
        return self._reply(data, latency_ms)

    def _reply(self, data: Any, latency_ms: int) -> ModelReply:
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise TransientModelError(f"{self.target} returned a malformed completion (no choices)")
        choice: dict[str, Any] = choices[0]
        finish_reason = str(choice.get("finish_reason") or "")
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if finish_reason == "content_filter":
            raise ContentFilteredError(
                f"The content filter of {self.target} withheld the reply (finish_reason content_filter); "
                "rephrase the message."
            )
        tool_calls = self._tool_calls(message.get("tool_calls") if isinstance(message, dict) else None)
        if tool_calls:
            content = content if isinstance(content, str) else ""
        elif not isinstance(content, str) or not content:
            if finish_reason == "length":
                raise ModelCallError(
                    f"{self.target} used up its output token limit before writing any text; raise "
                    "MODEL_MAX_OUTPUT_TOKENS.",
                    retryable=False,
                )
            raise TransientModelError(
                f"{self.target} returned a completion without text (finish_reason {finish_reason or 'none'})"
            )
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return ModelReply(
            content=content,
            tool_calls=tool_calls,
            model=str(data.get("model") or self.model),
            finish_reason=finish_reason,
            latency_ms=latency_ms,
            usage=Usage(
                prompt_tokens=_int(usage.get("prompt_tokens")),
                completion_tokens=_int(usage.get("completion_tokens")),
                total_tokens=_int(usage.get("total_tokens")),
            ),
        )

    def _tool_calls(self, raw: Any) -> tuple[dict[str, Any], ...]:
        """`message.tool_calls` as {"id", "name", "arguments" (raw JSON text), "needs_approval"};
        `needs_approval` is False here: the activity knows the tools, this client does not."""
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise TransientModelError(f"{self.target} returned a malformed completion (tool_calls)")
        calls = []
        for item in raw:
            function = item.get("function") if isinstance(item, dict) else None
            name = function.get("name") if isinstance(function, dict) else None
            if not isinstance(function, dict) or not isinstance(name, str) or not name:
                raise TransientModelError(f"{self.target} returned a malformed tool call (no function name)")
            arguments = function.get("arguments")
            if not isinstance(arguments, str):  # some compatible servers send an object
                arguments = "" if arguments is None else json.dumps(arguments)
            call_id = item.get("id")
            if not isinstance(call_id, str) or not call_id:  # some local servers omit ids
                call_id = f"call_{uuid.uuid4().hex[:24]}"
            calls.append({"id": call_id, "name": name, "arguments": arguments, "needs_approval": False})
        return tuple(calls)

    def _status_error(self, failure: openai.APIStatusError) -> ModelCallError:
        status = failure.status_code
        detail = _server_message(failure.body)
        said = f": {redact(detail, self._secrets)[:300]}" if detail else ""
        if _is_content_filter(failure):
            return ContentFilteredError(
                f"The content filter of {self.target} refused the prompt (HTTP {status}); "
                "rephrase the message."
            )
        if is_transient_status(status):
            return TransientModelError(
                f"HTTP {status} from {self.target}{said}",
                retry_after=retry_after_seconds(failure.response.headers),
            )
        hint = self._hints.get(status, "")
        return ModelRejectedError(
            f"{self.target} rejected the request with HTTP {status}{said}. {hint}".strip()
        )

    def close(self) -> None:
        self._client.close()
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _message_param(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": str(call.get("id")),
                    "type": "function",
                    "function": {
                        "name": str(call.get("name")),
                        "arguments": str(call.get("arguments") or "{}"),
                    },
                }
                for call in message.tool_calls
            ],
        }
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    if message.role == "tool":
        return {"role": "tool", "content": message.content, "tool_call_id": message.tool_call_id or ""}
    return {"role": "user", "content": message.content}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _server_message(body: object) -> str:
    if isinstance(body, dict):
        message = body.get("message")
        return message if isinstance(message, str) else ""
    return body.strip() if isinstance(body, str) else ""


def _is_content_filter(failure: openai.APIStatusError) -> bool:
    if failure.code == "content_filter":
        return True
    body = failure.body
    inner = body.get("innererror") if isinstance(body, dict) else None
    return isinstance(inner, dict) and inner.get("code") == "ResponsibleAIPolicyViolation"


# -- construction ----------------------------------------------------------------------------


def azure_credential(cfg: AzureOpenAISettings) -> ManagedIdentityCredential | DefaultAzureCredential:
    """The user-assigned managed identity named by AZURE_CLIENT_ID, else DefaultAzureCredential."""
    if cfg.managed_identity_client_id:
        return ManagedIdentityCredential(client_id=cfg.managed_identity_client_id)
    return DefaultAzureCredential()


def _azure_client(
    cfg: AzureOpenAISettings,
    settings: Settings,
    policy: RetryPolicy,
    credential: TokenProvider | None,
    token_provider: Callable[[], str] | None,
) -> OpenAIChatModel:
    target = f"Azure OpenAI deployment '{cfg.deployment}' at {cfg.endpoint}"
    # No azure_deployment: the SDK then routes each request to /deployments/{model}, so an
    # agent's `model` can name another deployment of the same resource.
    common: dict[str, Any] = {
        "azure_endpoint": cfg.endpoint,
        "api_version": cfg.api_version,
        "max_retries": 0,
        "timeout": settings.retry.timeout_seconds,
    }
    on_close: Callable[[], None] | None = None
    if cfg.api_key:
        client = openai.AzureOpenAI(api_key=cfg.api_key, **common)
        auth_hint = "Check that AZURE_OPENAI_API_KEY is a key of this Azure OpenAI resource."
    else:
        if token_provider is None:
            if credential is None:
                owned = azure_credential(cfg)
                credential, on_close = owned, owned.close
            token_provider = get_bearer_token_provider(credential, AZURE_OPENAI_SCOPE)
        client = openai.AzureOpenAI(azure_ad_token_provider=token_provider, **common)
        who = (
            f"managed identity {cfg.managed_identity_client_id} (AZURE_CLIENT_ID)"
            if cfg.managed_identity_client_id
            else "the app's identity (DefaultAzureCredential)"
        )
        auth_hint = (
            f"Check that {who} has the 'Cognitive Services OpenAI User' role on this Azure OpenAI "
            "resource (role assignments can take minutes to apply)."
        )
    hints = {
        401: auth_hint,
        403: auth_hint,
        404: (
            f"Check AZURE_OPENAI_DEPLOYMENT (a deployment of this resource) and AZURE_OPENAI_API_VERSION "
            f"({cfg.api_version})."
        ),
        400: "The request was invalid for this deployment; check the model supports chat completions.",
    }
    return OpenAIChatModel(
        client,
        model=cfg.deployment,
        policy=policy,
        target=target,
        hints=hints,
        max_output_tokens=settings.max_output_tokens,
        limit_param="max_completion_tokens",
        secrets=[cfg.api_key or ""],
        on_close=on_close,
    )


def _compatible_client(
    cfg: OpenAICompatibleSettings, settings: Settings, policy: RetryPolicy
) -> OpenAIChatModel:
    if cfg.base_url is None and not cfg.api_key:
        raise ConfigurationError(
            "OPENAI_API_KEY is required when OPENAI_BASE_URL is not set (api.openai.com)."
        )
    client = openai.OpenAI(
        base_url=cfg.base_url,
        api_key=cfg.api_key or PLACEHOLDER_API_KEY,
        max_retries=0,
        timeout=settings.retry.timeout_seconds,
    )
    where = cfg.base_url or "api.openai.com"
    auth_hint = f"Check OPENAI_API_KEY for {where}."
    return OpenAIChatModel(
        client,
        model=cfg.model,
        policy=policy,
        target=f"model '{cfg.model}' at {where}",
        hints={
            401: auth_hint,
            403: auth_hint,
            404: f"Check OPENAI_MODEL and OPENAI_BASE_URL (it usually ends in /v1) for {where}.",
            400: "The request was invalid for this model; check OPENAI_MODEL supports chat completions.",
        },
        max_output_tokens=settings.max_output_tokens,
        # api.openai.com wants the newer parameter; local servers widely know only the old one.
        limit_param="max_completion_tokens" if cfg.base_url is None else "max_tokens",
        secrets=[cfg.api_key or ""],
    )


def build_model_client(
    settings: Settings,
    *,
    credential: TokenProvider | None = None,
    token_provider: Callable[[], str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> OpenAIChatModel:
    """The client for the configured provider; raises ModelNotConfiguredError when there is none.

    `credential` / `token_provider` replace the Entra ID credential (tests, special hosts);
    `sleep` / `clock` go to the retry policy.
    """
    cfg = settings.require_model()
    policy = RetryPolicy(settings.retry, sleep=sleep, clock=clock)
    if isinstance(cfg, AzureOpenAISettings):
        return _azure_client(cfg, settings, policy, credential, token_provider)
    return _compatible_client(cfg, settings, policy)


_shared: ModelClient | None = None
_shared_lock = threading.Lock()


def get_model_client() -> ModelClient:
    """The process-wide client, built from `get_settings()` on first use and then reused."""
    global _shared
    client = _shared
    if client is None:
        with _shared_lock:
            if _shared is None:
                _shared = build_model_client(get_settings())
            client = _shared
    return client


def reset_model_client() -> None:
    """Close and forget the process-wide client (tests, or after settings change)."""
    global _shared
    with _shared_lock:
        client, _shared = _shared, None
    if isinstance(client, OpenAIChatModel):
        client.close()
