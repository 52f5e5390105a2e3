"""The `call_model` activity: the plain function, the trigger adapter and its registration."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import azure.durable_functions as df
import pytest
from azure.durable_functions.internal.converters import ActivityTriggerConverter
from azure.functions import meta
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from activities import call_model as call_model_module
from activities.call_model import ACTIVITY_NAME, call_model, fit_reply, mark_approvals, model_options
from agent import telemetry
from agent.errors import (
    InvalidInputError,
    ModelCallError,
    ModelNotConfiguredError,
    ModelRejectedError,
    ModelUnavailableError,
    error_for_failure,
)
from agent.model import ChatMessage, ModelOptions, ModelReply, ModelRequest, Usage
from agent.openai_model import get_model_client, reset_model_client
from agent.retry import TransientModelError
from agent.settings import DECLARED_SETTINGS, get_settings
from agents import Agent, AgentCatalog
from tests.fakes.model_server import ECHO_PREFIX, TOOL_ECHO_PREFIX, FakeModelServer, error, reply, tool_calls
from tools import ToolRegistry, tool_schemas

REQUEST = ModelRequest(
    thread_id="thread-1",
    turn=3,
    messages=[
        ChatMessage("system", "be kind"),
        ChatMessage("user", "first"),
        ChatMessage("assistant", "ok"),
        ChatMessage("user", "second question"),
    ],
)


class ScriptedClient:
    """A ModelClient that records what it was asked and returns a fixed reply."""

    def __init__(self, answer: ModelReply) -> None:
        self.answer = answer
        self.calls: list[list[ChatMessage]] = []
        self.options: list[ModelOptions | None] = []

    def complete(self, messages: list[ChatMessage], options: ModelOptions | None = None) -> ModelReply:
        self.calls.append(messages)
        self.options.append(options)
        return self.answer


def registered_activity() -> Callable[..., Any]:
    app = df.DFApp()
    app.register_functions(call_model_module.bp)
    (function,) = [f for f in app.get_functions() if f.get_function_name() == ACTIVITY_NAME]
    bindings = [json.loads(b) for b in function.get_raw_bindings()]
    assert bindings == [
        {
            "direction": "IN",
            "type": "activityTrigger",
            "name": "request",
            "activity": "call_model",
            "durableRequiresGrpc": True,
        }
    ]
    user_function: Callable[..., Any] = function.get_user_function()
    return user_function


def host_invoke(request_json: str) -> Any:
    """Call the activity the way the host does: JSON in via the trigger converter, JSON out."""
    with warnings.catch_warnings():
        # azure-functions advises once per process that df_loads got no expected_type.
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = ActivityTriggerConverter.decode(meta.Datum(request_json, "json"), trigger_metadata={})
    result = registered_activity()(request=decoded)
    return json.loads(ActivityTriggerConverter.encode(result, expected_type=None).value)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in DECLARED_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    reset_model_client()
    yield monkeypatch
    reset_model_client()
    get_settings.cache_clear()


@pytest.fixture
def model_server(clean_env: pytest.MonkeyPatch) -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        clean_env.setenv("OPENAI_MODEL", "activity-model")
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        clean_env.setenv("MODEL_MAX_ATTEMPTS", "2")
        yield server
        reset_model_client()


def test_call_model_passes_the_messages_and_returns_the_reply() -> None:
    answer = ModelReply("hi", "m", "stop", 12, Usage(1, 2, 3))
    client = ScriptedClient(answer)
    assert call_model(REQUEST, client) is answer
    assert client.calls == [REQUEST.messages]


def test_activity_round_trips_dicts_through_the_host_converters(model_server: FakeModelServer) -> None:
    model_server.enqueue(
        reply(
            "the answer",
            model="served-model",
            usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        )
    )
    result = host_invoke(json.dumps(REQUEST.to_dict()))
    parsed = ModelReply.from_dict(result)
    assert parsed.content == "the answer"
    assert parsed.model == "served-model"
    assert parsed.usage == Usage(5, 2, 7)
    assert parsed.finish_reason == "stop"
    assert result == parsed.to_dict()
    (sent,) = model_server.requests
    assert sent.messages == [{"role": m.role, "content": m.content} for m in REQUEST.messages]


def test_activity_answers_the_last_user_message(model_server: FakeModelServer) -> None:
    result = registered_activity()(request=REQUEST.to_dict())
    assert result["content"] == ECHO_PREFIX + "second question"


def test_activity_without_a_model_fails_fast(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotConfiguredError) as raised:
        registered_activity()(request=REQUEST.to_dict())
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT", "OPENAI_MODEL"):
        assert name in str(raised.value)


def test_activity_rejects_malformed_input(model_server: FakeModelServer) -> None:
    with pytest.raises(InvalidInputError):
        registered_activity()(request={"thread_id": "t", "messages": []})
    assert model_server.requests == []


@pytest.mark.parametrize(
    ("steps", "expected", "code", "retryable"),
    [
        ([error(401)], ModelRejectedError, "model_rejected", False),
        ([error(503), error(503)], ModelUnavailableError, "model_unavailable", True),
    ],
)
def test_model_errors_propagate_and_map_back_to_codes(
    model_server: FakeModelServer,
    steps: list[dict[str, Any]],
    expected: type[Exception],
    code: str,
    retryable: bool,
) -> None:
    model_server.enqueue(*steps)
    with pytest.raises(expected) as raised:
        registered_activity()(request=REQUEST.to_dict())
    failure = raised.value
    assert error_for_failure(type(failure).__name__, str(failure)) == (code, retryable)
    # the host may wrap the Python type: the message alone must still identify it
    assert error_for_failure(
        "Microsoft.Azure.WebJobs.FunctionFailedException", f"{type(failure).__name__}: {failure}"
    ) == (
        code,
        retryable,
    )
    assert len(model_server.requests) == len(steps)


# -- agents and tools --------------------------------------------------------------------------


def test_activity_offers_the_agents_tools_and_marks_approvals(model_server: FakeModelServer) -> None:
    model_server.enqueue(
        tool_calls(
            [
                {"id": "call_1", "name": "calculate", "arguments": {"expression": "6*7"}},
                {"id": "call_2", "name": "save_note", "arguments": {"text": "remember"}},
                {"id": "call_3", "name": "teleport", "arguments": "{not json"},
            ]
        )
    )
    result = host_invoke(json.dumps(REQUEST.to_dict()))
    reply = ModelReply.from_dict(result)
    assert reply.content == ""
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls == (
        {"id": "call_1", "name": "calculate", "arguments": '{"expression": "6*7"}', "needs_approval": False},
        {"id": "call_2", "name": "save_note", "arguments": '{"text": "remember"}', "needs_approval": True},
        {"id": "call_3", "name": "teleport", "arguments": "{not json", "needs_approval": False},
    )
    assert result["tool_calls"][1] == {
        "id": "call_2",
        "name": "save_note",
        "arguments": '{"text": "remember"}',
        "needs_approval": True,
    }
    (sent,) = model_server.requests
    assert sent.tool_names == ["current_time", "calculate", "save_note"]
    assert sent.tools == tool_schemas(["current_time", "calculate", "save_note"])
    assert sent.body["tool_choice"] == "auto"
    assert "temperature" not in sent.body
    assert sent.body["model"] == "activity-model"


def test_activity_uses_the_named_agent(model_server: FakeModelServer) -> None:
    request = replace(REQUEST, agent="calculator")
    host_invoke(json.dumps(request.to_dict()))
    (sent,) = model_server.requests
    assert sent.tool_names == ["calculate"]
    assert sent.body["temperature"] == 0.0


def test_activity_refuses_an_unknown_agent(model_server: FakeModelServer) -> None:
    with pytest.raises(InvalidInputError, match="unknown agent 'ghost'; known: assistant"):
        registered_activity()(request=replace(REQUEST, agent="ghost").to_dict())
    assert model_server.requests == []


def test_agent_overrides_reach_the_endpoint(model_server: FakeModelServer) -> None:
    special = Agent("special", "d", "i", model="other-model", temperature=0.5, max_output_tokens=77)
    plain = Agent("plain", "d", "i")
    catalog = AgentCatalog([special, plain], "special")
    client = get_model_client()
    call_model(replace(REQUEST, agent="special"), client, find_agent=catalog.get)
    call_model(replace(REQUEST, agent="plain"), client, find_agent=catalog.get)
    first, second = model_server.requests
    assert (first.body["model"], first.body["temperature"], first.body["max_tokens"]) == (
        "other-model",
        0.5,
        77,
    )
    assert first.tools == [] and "tool_choice" not in first.body  # no tools: none offered
    assert second.body["model"] == "activity-model"
    assert "temperature" not in second.body and "max_tokens" not in second.body


def test_tool_results_reach_the_model(model_server: FakeModelServer) -> None:
    call = {"id": "call_1", "name": "calculate", "arguments": '{"expression": "6*7"}'}
    request = replace(
        REQUEST,
        messages=[
            *REQUEST.messages,
            ChatMessage("assistant", "", tool_calls=(call,)),
            ChatMessage("tool", "42", tool_call_id="call_1"),
        ],
    )
    result = registered_activity()(request=request.to_dict())
    assert result["content"] == ECHO_PREFIX + TOOL_ECHO_PREFIX + "42"
    (sent,) = model_server.requests
    assert sent.messages[-2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "calculate", "arguments": '{"expression": "6*7"}'},
                }
            ],
        },
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
    ]


def test_mark_approvals_and_model_options_use_the_given_registry() -> None:
    registry = ToolRegistry()

    @registry.tool(needs_approval=True)
    def launch(target: str) -> str:
        """Launch."""
        return target

    agent = Agent("a", "d", "i", tools=("launch",), max_output_tokens=5)
    options = model_options(agent, registry)
    assert options == ModelOptions(tools=(registry.schemas(["launch"])[0],), max_output_tokens=5)
    reply = ModelReply(
        "", "m", "tool_calls", 1, tool_calls=({"id": "1", "name": "launch", "arguments": "{}"},)
    )
    assert mark_approvals(reply, registry).tool_calls[0]["needs_approval"] is True
    plain = ModelReply("hi", "m", "stop", 1)
    assert mark_approvals(plain, registry) is plain


def test_fit_reply_keeps_tool_calls_whole() -> None:
    call = {
        "id": "c",
        "name": "save_note",
        "arguments": json.dumps({"text": "n" * 2000}),
        "needs_approval": True,
    }
    reply = ModelReply("x" * 5000, "m", "tool_calls", 1, tool_calls=(call,))
    fitted = fit_reply(reply, 1024 + 4000)
    assert fitted.tool_calls == (call,)
    assert fitted.truncated and 0 < len(fitted.content) < 4000 - 2000
    with pytest.raises(ModelCallError, match="tool calls of") as raised:
        fit_reply(reply, 1024 + 1000)
    assert raised.value.retryable is False


def test_request_and_reply_round_trips_and_old_payloads() -> None:
    request = replace(REQUEST, agent="calculator")
    assert ModelRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request
    old_request = {k: v for k, v in REQUEST.to_dict().items() if k != "agent"}
    assert ModelRequest.from_dict(old_request).agent == "assistant"
    call = {"id": "c1", "name": "calculate", "arguments": "{}", "needs_approval": False}
    reply = ModelReply("", "m", "tool_calls", 3, Usage(1, 2, 3), tool_calls=(call,))
    assert ModelReply.from_dict(json.loads(json.dumps(reply.to_dict()))) == reply
    old_reply = {"content": "hi", "model": "m", "finish_reason": "stop", "latency_ms": 2}
    assert ModelReply.from_dict(old_reply).tool_calls == ()
    # needs_approval defaults to False; a call without an id or with decoded arguments is refused
    assert ModelReply.from_dict(
        {**old_reply, "tool_calls": [{"id": "c", "name": "n", "arguments": ""}]}
    ).tool_calls == ({"id": "c", "name": "n", "arguments": "", "needs_approval": False},)
    for bad in ([{"name": "n", "arguments": "{}"}], [{"id": "c", "name": "n", "arguments": {}}], ["x"], "x"):
        with pytest.raises(InvalidInputError):
            ModelReply.from_dict({**old_reply, "tool_calls": bad})


# -- fitting a reply to what a thread stores ---------------------------------------------------


def test_fit_reply_keeps_the_longest_prefix_that_fits_exactly() -> None:
    reply = ModelReply("x" * 5000, "m", "stop", 1)
    budget = 1002  # 1000 characters and the two quotes of their JSON string
    fitted = fit_reply(reply, call_model_module.REPLY_ENTRY_OVERHEAD + budget)
    assert fitted.content == "x" * 1000
    assert (fitted.finish_reason, fitted.truncated) == ("length", True)
    whole = ModelReply("x" * 1000, "m", "stop", 1)
    assert fit_reply(whole, call_model_module.REPLY_ENTRY_OVERHEAD + budget) is whole


def test_fit_reply_measures_the_encoding_not_the_characters() -> None:
    # each newline is two bytes once encoded ("\n"); room for the quotes and one of them
    reply = ModelReply("\n\n\nabc", "m", "stop", 1)
    fitted = fit_reply(reply, call_model_module.REPLY_ENTRY_OVERHEAD + 2 + 2)
    assert fitted.content == "\n"
    # room for the quotes and one byte: not even one newline fits
    assert fit_reply(reply, call_model_module.REPLY_ENTRY_OVERHEAD + 3).content == ""
    # every prefix length from 0 to 6 is the longest that fits its budget
    for length in range(7):
        room = len(json.dumps(reply.content[:length]))
        fitted = fit_reply(reply, call_model_module.REPLY_ENTRY_OVERHEAD + room)
        assert fitted.content == reply.content[:length]
        assert fitted.truncated is (length < 6)


def test_fit_reply_tool_calls_may_take_all_the_room() -> None:
    call = {"id": "c", "name": "n", "arguments": "{}", "needs_approval": False}
    room = len(json.dumps([call]))
    reply = ModelReply("", "m", "tool_calls", 1, tool_calls=(call,))
    assert fit_reply(reply, call_model_module.REPLY_ENTRY_OVERHEAD + room) is reply
    with_text = replace(reply, content="some words")
    fitted = fit_reply(with_text, call_model_module.REPLY_ENTRY_OVERHEAD + room)
    assert (fitted.content, fitted.truncated, fitted.tool_calls) == ("", True, (call,))
    with pytest.raises(ModelCallError, match=f"tool calls of {room} bytes"):
        fit_reply(reply, call_model_module.REPLY_ENTRY_OVERHEAD + room - 1)


# -- what the activity records about a call ----------------------------------------------------


class NamedClient(ScriptedClient):
    model = "deployment-7"


@pytest.mark.parametrize(
    ("agent_model", "client_type", "requested"),
    [
        (None, NamedClient, "deployment-7"),
        ("override-1", NamedClient, "override-1"),
        (None, ScriptedClient, "model"),
    ],
)
def test_the_span_names_the_thread_turn_and_requested_model(
    spans: InMemorySpanExporter, agent_model: str | None, client_type: type[ScriptedClient], requested: str
) -> None:
    agent = Agent("a", "d", "i", model=agent_model)
    call_model(REQUEST, client_type(ModelReply("hi", "served", "stop", 4)), find_agent=lambda _: agent)
    (span,) = spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert span.name == f"chat {requested}"
    assert attributes[telemetry.ATTR_REQUEST_MODEL] == requested
    assert (attributes[telemetry.ATTR_THREAD_ID], attributes[telemetry.ATTR_TURN]) == ("thread-1", 3)
    assert attributes[telemetry.ATTR_RESPONSE_MODEL] == "served"


def test_each_call_is_logged_with_counts_and_never_its_text(caplog: pytest.LogCaptureFixture) -> None:
    call = {"id": "c", "name": "n", "arguments": "{}", "needs_approval": False}
    answer = ModelReply("SECRET-REPLY", "served", "tool_calls", 12, Usage(1, 2, 3), tool_calls=(call,))
    with caplog.at_level(logging.INFO, logger=call_model_module.__name__):
        call_model(REQUEST, ScriptedClient(answer))
    (record,) = [r for r in caplog.records if r.name == call_model_module.__name__]
    assert record.getMessage() == (
        "thread thread-1 turn 3: model served answered in 12 ms "
        "(3 tokens, finish_reason tool_calls, 1 tool calls)"
    )


class FailingClient:
    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    def complete(self, messages: list[ChatMessage], options: ModelOptions | None = None) -> ModelReply:
        raise self.failure


@pytest.mark.parametrize(
    ("failure", "expected_type", "retryable"),
    [
        # a kind whose constructor takes other arguments is copied as a plain model error
        (TransientModelError("https://acct.openai.azure.com/ said 503"), ModelCallError, True),
        # the kind is kept, and so is a retryable flag that differs from the kind's default
        (ModelUnavailableError("10.1.2.3:443 refused", retryable=False), ModelUnavailableError, False),
        (ModelRejectedError("https://acct.openai.azure.com/ no", retryable=True), ModelRejectedError, True),
    ],
)
def test_the_trigger_raises_a_public_copy_of_a_model_error(
    model_server: FakeModelServer,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    expected_type: type[Exception],
    retryable: bool,
) -> None:
    monkeypatch.setattr(call_model_module, "get_model_client", lambda: FailingClient(failure))
    with pytest.raises(ModelCallError) as raised:
        registered_activity()(request=REQUEST.to_dict())
    copy = raised.value
    assert type(copy) is expected_type
    assert copy.retryable is retryable
    assert "the model endpoint" in copy.message
    assert "azure.com" not in copy.message and "10.1.2.3" not in copy.message


def test_minimal_payloads_read_with_their_defaults() -> None:
    reply = ModelReply.from_dict({"content": "hi"})
    assert (reply.model, reply.finish_reason, reply.latency_ms, reply.usage) == ("", "", 0, Usage(0, 0, 0))
    call = ModelReply.from_dict({"content": "", "tool_calls": [{"id": "c", "name": "n"}]}).tool_calls[0]
    assert call["arguments"] == ""  # a call without arguments has empty ones
    message = [{"role": "user", "content": "q"}]
    assert ModelRequest.from_dict({"messages": message}).max_reply_bytes == 64 * 1024
    assert ModelRequest.from_dict({"messages": message, "max_reply_bytes": 1000}).max_reply_bytes == 1000


def test_the_request_keeps_every_field_on_the_wire() -> None:
    call = {"id": "call_1", "name": "calculate", "arguments": "{}"}
    request = ModelRequest(
        thread_id="thread-9",
        turn=4,
        messages=[
            ChatMessage("user", "2+2?"),
            ChatMessage.from_dict({"role": "assistant", "content": "", "tool_calls": [call]}),
            ChatMessage.from_dict({"role": "tool", "content": "4", "tool_call_id": "call_1"}),
        ],
        max_reply_bytes=12_345,
        agent="calculator",
    )
    assert ModelRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request
    assert ChatMessage.from_dict({"role": "tool", "content": "4", "tool_call_id": 7}).tool_call_id is None


def test_the_reply_keeps_every_field_on_the_wire_and_refuses_what_it_cannot_read() -> None:
    reply = ModelReply(
        content="cut",
        model="m",
        finish_reason="length",
        latency_ms=12,
        usage=Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
        truncated=True,
    )
    assert ModelReply.from_dict(json.loads(json.dumps(reply.to_dict()))) == reply
    with pytest.raises(InvalidInputError) as bad_calls:
        ModelReply.from_dict({"content": "x", "tool_calls": "call it"})
    assert str(bad_calls.value) == "model reply 'tool_calls' must be a list of objects"
    with pytest.raises(InvalidInputError) as bad_message:
        ChatMessage.from_dict({"role": "assistant", "content": "", "tool_calls": ["not an object"]})
    assert str(bad_message.value) == "chat message 'tool_calls' must be a list of objects"
    anonymous = ModelRequest.from_dict({"messages": [{"role": "user", "content": "hi"}]})
    assert (anonymous.thread_id, anonymous.turn) == ("", 0)
