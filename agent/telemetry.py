"""OpenTelemetry for the app: export to Azure Monitor only when it is configured.

`configure_telemetry(settings)` turns on the Azure Monitor OpenTelemetry distro once per
process, and only when APPLICATIONINSIGHTS_CONNECTION_STRING is set; it authenticates with
the user-assigned managed identity when AZURE_CLIENT_ID is set (Application Insights in
Azure accepts Entra ID tokens only). Without a connection string nothing is configured and
the distro is not even imported. Nothing happens at import time.

The span helpers below work either way: with no SDK configured they produce non-recording
spans at almost no cost. They record ids, counts, durations and error types, never prompt
or reply text and never exception messages (which can quote either).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from agent.errors import ConfigurationError
from agent.settings import AzureOpenAISettings, Settings

logger = logging.getLogger(__name__)

SERVICE_NAME = "durable-agent"
TRACER_NAME = "durable_agent"

# Span attribute names (OpenTelemetry GenAI / HTTP semantic conventions where they exist).
ATTR_OPERATION = "gen_ai.operation.name"
ATTR_SYSTEM = "gen_ai.system"
ATTR_REQUEST_MODEL = "gen_ai.request.model"
ATTR_RESPONSE_MODEL = "gen_ai.response.model"
ATTR_INPUT_TOKENS = "gen_ai.usage.input_tokens"
ATTR_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
ATTR_TOTAL_TOKENS = "gen_ai.usage.total_tokens"
ATTR_FINISH_REASONS = "gen_ai.response.finish_reasons"
ATTR_LATENCY_MS = "agent.model.latency_ms"
ATTR_THREAD_ID = "agent.thread.id"
ATTR_TURN = "agent.thread.turn"
ATTR_ERROR_TYPE = "error.type"
ATTR_ERROR_CODE = "agent.error.code"
ATTR_HTTP_METHOD = "http.request.method"
ATTR_HTTP_ROUTE = "http.route"
ATTR_HTTP_STATUS = "http.response.status_code"
ATTR_DURATION_MS = "agent.duration_ms"
ATTR_REPLAYING = "agent.orchestration.replaying"

AttributeValue = str | bool | int | float

_lock = threading.Lock()
_configured: bool | None = None
# Tests point the helpers at their own provider instead of the process-wide one.
_provider: trace.TracerProvider | None = None


def configure_telemetry(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """Turn on export to Application Insights once per process; True when it is on.

    Call it lazily (first request or first activity), never at import. Later calls return
    the first call's answer. `environ` is only consulted for AZURE_CLIENT_ID when the model
    settings do not already carry it.
    """
    global _configured
    with _lock:
        if _configured is not None:
            return _configured
        connection_string = settings.applicationinsights_connection_string
        if not connection_string:
            _configured = False
            return False
        _configured = _configure_azure_monitor(connection_string, _client_id(settings, environ))
        return _configured


def is_telemetry_configured() -> bool:
    """Whether `configure_telemetry` turned export on in this process."""
    return bool(_configured)


def _client_id(settings: Settings, environ: Mapping[str, str] | None) -> str | None:
    if isinstance(settings.model, AzureOpenAISettings) and settings.model.managed_identity_client_id:
        return settings.model.managed_identity_client_id
    value = (os.environ if environ is None else environ).get("AZURE_CLIENT_ID", "").strip()
    return value or None


def _configure_azure_monitor(connection_string: str, client_id: str | None) -> bool:
    # Imported here so that a process without a connection string never loads the distro.
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.sdk.resources import Resource

    credential = None
    if client_id:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=client_id)
    try:
        configure_azure_monitor(
            connection_string=connection_string,
            credential=credential,
            resource=Resource.create({"service.name": SERVICE_NAME}),
            # Export the app's own log records; the Functions host already ships the rest.
            logger_name="agent",
        )
    except ValueError as exc:
        raise ConfigurationError(
            "APPLICATIONINSIGHTS_CONNECTION_STRING is not a valid Application Insights connection "
            f"string ({type(exc).__name__}); copy it from the Application Insights resource."
        ) from None
    logger.info(
        "OpenTelemetry export to Azure Monitor is on (%s)",
        "managed identity" if client_id else "connection string only",
    )
    return True


def _tracer() -> trace.Tracer:
    provider = _provider if _provider is not None else trace.get_tracer_provider()
    return provider.get_tracer(TRACER_NAME)


def _record_error(span: trace.Span, exc: BaseException) -> None:
    # The type and the app's stable error code only: messages can quote prompts or replies.
    span.set_attribute(ATTR_ERROR_TYPE, type(exc).__name__)
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        span.set_attribute(ATTR_ERROR_CODE, code)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


@contextmanager
def _timed_span(
    name: str, kind: SpanKind, attributes: Mapping[str, AttributeValue], duration_attribute: str | None
) -> Iterator[trace.Span]:
    """A span that records an escaping exception's type (never its message) and, when
    asked, its own duration in milliseconds; the exception propagates unchanged."""
    with _tracer().start_as_current_span(
        name, kind=kind, record_exception=False, set_status_on_exception=False, attributes=attributes
    ) as span:
        started = time.perf_counter()
        try:
            yield span
        except BaseException as exc:
            _record_error(span, exc)
            raise
        finally:
            if duration_attribute is not None:
                span.set_attribute(duration_attribute, round((time.perf_counter() - started) * 1000, 3))


class UsageLike(Protocol):
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def total_tokens(self) -> int: ...


class ReplyLike(Protocol):
    """What `ModelCall.record_reply` reads from a reply (agent.model.ModelReply fits)."""

    @property
    def model(self) -> str: ...
    @property
    def finish_reason(self) -> str: ...
    @property
    def usage(self) -> UsageLike: ...


@dataclass
class ModelCall:
    """Filled in inside `model_call_span`; written to the span when the block ends."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    finish_reason: str | None = None
    response_model: str | None = None

    def record_usage(
        self, prompt_tokens: int, completion_tokens: int, total_tokens: int | None = None
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_tokens = prompt_tokens + completion_tokens if total_tokens is None else total_tokens

    def record_reply(self, reply: ReplyLike) -> None:
        """Usage, finish reason and model of a reply; its text is not looked at."""
        usage = reply.usage
        self.record_usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens or None)
        self.finish_reason = reply.finish_reason or None
        self.response_model = reply.model or None


@contextmanager
def model_call_span(thread_id: str, turn: int, model: str) -> Iterator[ModelCall]:
    """A CLIENT span around one model request.

    Records thread id, turn, requested model, token usage (what the block put in the
    yielded `ModelCall`), latency, finish reason and, on an exception, its type; the
    exception propagates unchanged.

        with model_call_span(request.thread_id, request.turn, deployment) as call:
            reply = client.complete(messages)
            call.record_reply(reply)
    """
    call = ModelCall()
    attributes: dict[str, AttributeValue] = {
        ATTR_OPERATION: "chat",
        ATTR_SYSTEM: "openai",
        ATTR_REQUEST_MODEL: model,
        ATTR_THREAD_ID: thread_id,
        ATTR_TURN: turn,
    }
    with _timed_span(f"chat {model}", SpanKind.CLIENT, attributes, ATTR_LATENCY_MS) as span:
        try:
            yield call
        finally:
            if call.prompt_tokens is not None:
                span.set_attribute(ATTR_INPUT_TOKENS, call.prompt_tokens)
            if call.completion_tokens is not None:
                span.set_attribute(ATTR_OUTPUT_TOKENS, call.completion_tokens)
            if call.total_tokens is not None:
                span.set_attribute(ATTR_TOTAL_TOKENS, call.total_tokens)
            if call.finish_reason:
                span.set_attribute(ATTR_FINISH_REASONS, [call.finish_reason])
            if call.response_model:
                span.set_attribute(ATTR_RESPONSE_MODEL, call.response_model)


@dataclass
class HttpCall:
    """Filled in inside `http_request_span`."""

    status_code: int | None = None


@contextmanager
def http_request_span(method: str, route: str) -> Iterator[HttpCall]:
    """A span around one HTTP handler: method, route template, status code, error type.

    `route` is the template (e.g. "threads/{id}/messages"), never the concrete path or the
    query, so ids and text do not become span names. INTERNAL kind: the Functions host
    already records the request itself.
    """
    call = HttpCall()
    attributes: dict[str, AttributeValue] = {ATTR_HTTP_METHOD: method.upper(), ATTR_HTTP_ROUTE: route}
    with _timed_span(f"{method.upper()} {route}", SpanKind.INTERNAL, attributes, None) as span:
        try:
            yield call
        finally:
            if call.status_code is not None:
                span.set_attribute(ATTR_HTTP_STATUS, call.status_code)
                if call.status_code >= 500:
                    span.set_attribute(ATTR_ERROR_TYPE, str(call.status_code))
                    span.set_status(Status(StatusCode.ERROR))


@contextmanager
def operation_span(
    name: str,
    *,
    thread_id: str | None = None,
    replaying: bool = False,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[trace.Span]:
    """A span around an orchestration step, an activity or an entity operation.

    Pass `replaying=context.is_replaying` from orchestrator code: a replayed step records
    nothing (it already did the first time). Attributes must be ids, counts or flags,
    never message text. Records the duration and, on an exception, its type.
    """
    if replaying:
        yield trace.INVALID_SPAN
        return
    merged: dict[str, AttributeValue] = dict(attributes or {})
    if thread_id is not None:
        merged[ATTR_THREAD_ID] = thread_id
    with _timed_span(name, SpanKind.INTERNAL, merged, ATTR_DURATION_MS) as span:
        yield span
