"""agent.telemetry: spans carry ids, counts and error types but never text; nothing is
configured (or even imported) without a connection string; Azure Monitor is set up once,
with the managed identity when there is one."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import ProxyTracerProvider, SpanKind, StatusCode

from agent import telemetry
from agent.errors import ConfigurationError, DurableAgentError
from agent.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "PROMPT-TEXT what is the secret of the blue door"
REPLY = "REPLY-TEXT the blue door opens on Tuesdays"
CONNECTION_STRING = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
    "IngestionEndpoint=https://example.invalid/;LiveEndpoint=https://example.invalid/"
)
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_configured", None)


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    finished = exporter.get_finished_spans()
    assert len(finished) == 1
    return finished[0]


def _everything_recorded(span: ReadableSpan) -> str:
    parts = [span.name, repr(dict(span.attributes or {})), repr(span.status.description)]
    parts += [repr((e.name, dict(e.attributes or {}))) for e in span.events]
    parts += [repr(dict(link.attributes or {})) for link in span.links]
    return "\n".join(parts)


@dataclass(frozen=True)
class _Usage:
    prompt_tokens: int = 120
    completion_tokens: int = 30
    total_tokens: int = 150


@dataclass(frozen=True)
class _Reply:
    content: str = REPLY
    model: str = "gpt-4o-mini-2024-07-18"
    finish_reason: str = "stop"
    latency_ms: int = 5
    usage: _Usage = field(default_factory=_Usage)


def test_model_call_span_records_usage_latency_and_finish_reason(spans: InMemorySpanExporter) -> None:
    with telemetry.model_call_span("thread-1", 3, "gpt-4o-mini") as call:
        call.record_reply(_Reply())
    span = _only(spans)
    attrs = dict(span.attributes or {})
    assert span.kind is SpanKind.CLIENT
    assert span.name == "chat gpt-4o-mini"
    assert attrs[telemetry.ATTR_THREAD_ID] == "thread-1"
    assert attrs[telemetry.ATTR_TURN] == 3
    assert attrs[telemetry.ATTR_REQUEST_MODEL] == "gpt-4o-mini"
    assert attrs[telemetry.ATTR_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attrs[telemetry.ATTR_INPUT_TOKENS] == 120
    assert attrs[telemetry.ATTR_OUTPUT_TOKENS] == 30
    assert attrs[telemetry.ATTR_TOTAL_TOKENS] == 150
    assert attrs[telemetry.ATTR_FINISH_REASONS] == ("stop",)
    latency = attrs[telemetry.ATTR_LATENCY_MS]
    assert isinstance(latency, float)
    assert latency >= 0
    assert telemetry.ATTR_ERROR_TYPE not in attrs
    assert span.status.status_code is StatusCode.UNSET
    assert REPLY not in _everything_recorded(span)


@pytest.mark.parametrize(("total", "recorded"), [(0, 150), (999, 999)])
def test_a_reply_without_a_total_gets_the_sum(spans: InMemorySpanExporter, total: int, recorded: int) -> None:
    with telemetry.model_call_span("t", 1, "m") as call:
        call.record_reply(_Reply(usage=_Usage(total_tokens=total)))
    assert dict(_only(spans).attributes or {})[telemetry.ATTR_TOTAL_TOKENS] == recorded


def test_record_usage_computes_total_when_missing(spans: InMemorySpanExporter) -> None:
    with telemetry.model_call_span("t", 1, "m") as call:
        call.record_usage(10, 5)
    assert dict(_only(spans).attributes or {})[telemetry.ATTR_TOTAL_TOKENS] == 15


class _LeakyModelError(DurableAgentError):
    code = "model_error"


def test_model_call_span_records_error_type_but_not_message(spans: InMemorySpanExporter) -> None:
    with pytest.raises(_LeakyModelError), telemetry.model_call_span("thread-2", 1, "gpt-4o-mini"):
        raise _LeakyModelError(f"upstream said: {PROMPT} / {REPLY}")
    span = _only(spans)
    attrs = dict(span.attributes or {})
    assert attrs[telemetry.ATTR_ERROR_TYPE] == "_LeakyModelError"
    assert attrs[telemetry.ATTR_ERROR_CODE] == "model_error"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "_LeakyModelError"  # the type, never the message
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == telemetry.TRACER_NAME
    assert telemetry.ATTR_LATENCY_MS in attrs
    assert span.events == ()
    recorded = _everything_recorded(span)
    assert PROMPT not in recorded
    assert REPLY not in recorded
    assert "upstream said" not in recorded


def test_http_request_span(spans: InMemorySpanExporter) -> None:
    with telemetry.http_request_span("post", "threads/{id}/messages") as call:
        call.status_code = 202
    span = _only(spans)
    attrs = dict(span.attributes or {})
    assert span.name == "POST threads/{id}/messages"
    assert attrs[telemetry.ATTR_HTTP_METHOD] == "POST"
    assert attrs[telemetry.ATTR_HTTP_ROUTE] == "threads/{id}/messages"
    assert attrs[telemetry.ATTR_HTTP_STATUS] == 202
    assert span.status.status_code is StatusCode.UNSET


def test_http_request_span_marks_server_errors(spans: InMemorySpanExporter) -> None:
    with telemetry.http_request_span("GET", "threads/{id}") as call:
        call.status_code = 503
    span = _only(spans)
    assert dict(span.attributes or {})[telemetry.ATTR_ERROR_TYPE] == "503"
    assert span.status.status_code is StatusCode.ERROR


def test_http_request_span_records_exception_type_only(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError, match="PROMPT"), telemetry.http_request_span("POST", "threads"):
        raise ValueError(PROMPT)
    span = _only(spans)
    assert dict(span.attributes or {})[telemetry.ATTR_ERROR_TYPE] == "ValueError"
    assert PROMPT not in _everything_recorded(span)


def test_operation_span_records_duration_and_attributes(spans: InMemorySpanExporter) -> None:
    with telemetry.operation_span(
        "activity call_model", thread_id="t-9", attributes={"agent.thread.turn": 4}
    ):
        pass
    span = _only(spans)
    attrs = dict(span.attributes or {})
    assert span.kind is SpanKind.INTERNAL
    assert attrs[telemetry.ATTR_THREAD_ID] == "t-9"
    assert attrs[telemetry.ATTR_TURN] == 4
    assert telemetry.ATTR_DURATION_MS in attrs


def test_operation_span_records_nothing_while_replaying(spans: InMemorySpanExporter) -> None:
    with telemetry.operation_span("orchestration thread", thread_id="t", replaying=True) as span:
        assert not span.is_recording()
    assert spans.get_finished_spans() == ()


def test_operation_span_error(spans: InMemorySpanExporter) -> None:
    with pytest.raises(KeyError), telemetry.operation_span("entity history.append"):
        raise KeyError(REPLY)
    span = _only(spans)
    assert dict(span.attributes or {})[telemetry.ATTR_ERROR_TYPE] == "KeyError"
    assert REPLY not in _everything_recorded(span)


def test_helpers_are_no_ops_without_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    # No SDK: the process-wide provider is the API's proxy, which hands out non-recording spans.
    monkeypatch.setattr(telemetry, "_provider", None)
    assert isinstance(trace.get_tracer_provider(), ProxyTracerProvider), "another test set an SDK provider"
    with telemetry.model_call_span("t", 1, "m") as call:
        call.record_usage(1, 1)
    assert call.total_tokens == 2  # the caller's bookkeeping still works
    with telemetry.http_request_span("GET", "health") as http:
        http.status_code = 200
    assert http.status_code == 200
    with telemetry.operation_span("x") as span:
        span.set_attribute("k", 1)
        assert not span.is_recording()
        assert not span.get_span_context().is_valid
    # An exception still passes through unchanged, the very same object.
    failure = KeyError("boom")
    with pytest.raises(KeyError) as raised, telemetry.operation_span("y"):
        raise failure
    assert raised.value is failure


def test_no_connection_string_configures_nothing(fresh_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(**_: Any) -> None:
        raise AssertionError("must not be called")

    monkeypatch.setattr(telemetry, "_configure_azure_monitor", boom)
    settings = load_settings({"AZURE_CLIENT_ID": CLIENT_ID})
    assert telemetry.configure_telemetry(settings) is False
    assert telemetry.configure_telemetry(settings) is False
    assert telemetry.is_telemetry_configured() is False


def test_without_connection_string_the_distro_is_never_imported() -> None:
    # A fresh interpreter, so earlier imports in this test process cannot hide one.
    code = textwrap.dedent(
        """
        import sys
        from opentelemetry import trace
        import agent.telemetry as t
        from agent.settings import load_settings
        assert "azure.monitor.opentelemetry" not in sys.modules, "imported at import time"
        assert t.configure_telemetry(load_settings({"AZURE_CLIENT_ID": "x"})) is False
        with t.model_call_span("t", 1, "m") as call:
            call.record_usage(1, 2)
        loaded = sorted(m for m in sys.modules if m.startswith(("azure.monitor", "opentelemetry.sdk")))
        assert loaded == [], loaded
        assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _fake_distro(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import azure.monitor.opentelemetry as distro

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(distro, "configure_azure_monitor", lambda **kwargs: calls.append(kwargs))
    return calls


def test_connection_string_configures_azure_monitor_once_with_managed_identity(
    fresh_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import azure.identity
    from azure.identity import ManagedIdentityCredential

    class RecordingCredential(ManagedIdentityCredential):
        def __init__(self, *, client_id: str | None = None) -> None:
            super().__init__(client_id=client_id)
            self.client_id_given = client_id

    monkeypatch.setattr(azure.identity, "ManagedIdentityCredential", RecordingCredential)
    calls = _fake_distro(monkeypatch)
    settings = load_settings(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION_STRING,
            "MODEL_PROVIDER": "azure",
            "AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com",
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o-mini",
            "AZURE_CLIENT_ID": CLIENT_ID,
        }
    )
    assert telemetry.configure_telemetry(settings) is True
    assert telemetry.configure_telemetry(settings) is True
    assert telemetry.is_telemetry_configured() is True
    assert len(calls) == 1
    (kwargs,) = calls
    assert kwargs["connection_string"] == CONNECTION_STRING
    assert isinstance(kwargs["credential"], ManagedIdentityCredential)
    assert kwargs["resource"].attributes["service.name"] == telemetry.SERVICE_NAME
    assert kwargs["logger_name"] == "agent"  # the app's own log records, not every library's
    credential = kwargs["credential"]
    assert isinstance(credential, RecordingCredential)
    assert credential.client_id_given == CLIENT_ID  # the app's identity, not the host's


def test_client_id_from_environment_when_model_is_not_azure(
    fresh_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []

    def fake(connection_string: str, client_id: str | None) -> bool:
        seen.append(client_id)
        return True

    monkeypatch.setattr(telemetry, "_configure_azure_monitor", fake)
    settings = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION_STRING})
    assert telemetry.configure_telemetry(settings, environ={"AZURE_CLIENT_ID": CLIENT_ID}) is True
    assert seen == [CLIENT_ID]


def test_connection_string_without_identity_uses_no_credential(
    fresh_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_distro(monkeypatch)
    settings = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION_STRING})
    assert telemetry.configure_telemetry(settings, environ={}) is True
    assert calls[0]["credential"] is None


def test_invalid_connection_string_is_a_configuration_error(
    fresh_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import azure.monitor.opentelemetry as distro

    def reject(**_: Any) -> None:
        raise ValueError("Invalid instrumentation key")

    monkeypatch.setattr(distro, "configure_azure_monitor", reject)
    settings = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": "nonsense"})
    with pytest.raises(ConfigurationError, match="APPLICATIONINSIGHTS_CONNECTION_STRING"):
        telemetry.configure_telemetry(settings, environ={})


def test_deployment_installs_the_distro() -> None:
    # Azure installs requirements.txt alone; the lazily imported distro must be pinned there.
    pins = {
        line.split("==")[0].strip().lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.lstrip().startswith("#")
    }
    assert {"azure-monitor-opentelemetry", "azure-identity"} <= pins


@pytest.mark.parametrize(
    ("client_id", "how"), [(CLIENT_ID, "managed identity"), (None, "connection string only")]
)
def test_turning_export_on_is_logged_with_how_it_authenticates(
    fresh_state: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    client_id: str | None,
    how: str,
) -> None:
    _fake_distro(monkeypatch)
    with caplog.at_level(logging.INFO, logger=telemetry.logger.name):
        assert telemetry._configure_azure_monitor(CONNECTION_STRING, client_id) is True
    assert [r.getMessage() for r in caplog.records if r.name == telemetry.logger.name] == [
        f"OpenTelemetry export to Azure Monitor is on ({how})"
    ]
