"""The model client with tools and per-call options, against the scripted fake server."""

from __future__ import annotations

import json
import re

import pytest

from agent.errors import (
    ModelCallError,
    ModelUnavailableError,
)
from agent.model import ChatMessage, ModelOptions
from tests.fakes.clock import FakeClock
from tests.fakes.model_server import (
    ECHO_PREFIX,
    TOOL_ECHO_PREFIX,
    FakeModelServer,
    malformed,
    tool_calls,
)
from tests.unit.model_client_support import (
    ask,
    azure,
    compatible,
)

# -- tools and per-call options ----------------------------------------------------------------

CALCULATE = {
    "type": "function",
    "function": {
        "name": "calculate",
        "description": "Evaluate.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}


def test_tools_are_offered_and_tool_calls_parsed(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(
        tool_calls(
            [
                {"id": "call_a", "name": "calculate", "arguments": {"expression": "1+1"}},
                {"id": "call_b", "name": "calculate", "arguments": '{"expression": "broken'},
            ]
        )
    )
    with compatible(server, clock) as model:
        answer = model.complete([ChatMessage("user", "sum?")], ModelOptions(tools=(CALCULATE,)))
    assert answer.content == ""  # content was null
    assert answer.finish_reason == "tool_calls"
    assert answer.tool_calls == (
        {"id": "call_a", "name": "calculate", "arguments": '{"expression": "1+1"}', "needs_approval": False},
        {"id": "call_b", "name": "calculate", "arguments": '{"expression": "broken', "needs_approval": False},
    )
    (request,) = server.requests
    assert request.tools == [CALCULATE]
    assert request.body["tool_choice"] == "auto"


def test_no_tools_means_no_tools_sent(server: FakeModelServer, clock: FakeClock) -> None:
    with compatible(server, clock) as model:
        ask(model)
        model.complete([ChatMessage("user", "x")], ModelOptions())
    for request in server.requests:
        assert "tools" not in request.body and "tool_choice" not in request.body
        assert "temperature" not in request.body


def test_text_and_tool_calls_together(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(tool_calls([{"name": "calculate", "arguments": {}}], content="Let me check."))
    with compatible(server, clock) as model:
        answer = model.complete([ChatMessage("user", "x")], ModelOptions(tools=(CALCULATE,)))
    assert answer.content == "Let me check."
    assert answer.tool_calls[0]["id"] == "call_0_calculate"
    assert answer.tool_calls[0]["arguments"] == "{}"


def test_loose_tool_calls_from_compatible_servers(server: FakeModelServer, clock: FakeClock) -> None:
    """Some local servers omit call ids or send arguments as an object."""
    body = {
        "model": "m",
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "type": "function",
                            "function": {"name": "calculate", "arguments": {"expression": "2"}},
                        },
                        {"id": "", "type": "function", "function": {"name": "calculate"}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    server.enqueue(malformed(json.dumps(body)))
    with compatible(server, clock) as model:
        answer = model.complete([ChatMessage("user", "x")], ModelOptions(tools=(CALCULATE,)))
    first, second = answer.tool_calls
    assert first["arguments"] == '{"expression": "2"}' and second["arguments"] == ""
    # ids made here look like OpenAI's (call_ and 24 characters), one per call
    made_here = re.compile(r"call_[0-9a-f]{24}")
    assert made_here.fullmatch(first["id"]) and made_here.fullmatch(second["id"])
    assert first["id"] != second["id"]


def test_a_malformed_tool_call_is_transient(server: FakeModelServer, clock: FakeClock) -> None:
    bad = {"choices": [{"message": {"role": "assistant", "tool_calls": [{"id": "x", "function": {}}]}}]}
    server.enqueue(malformed(json.dumps(bad)), malformed(json.dumps(bad)))
    with (
        compatible(server, clock, MODEL_MAX_ATTEMPTS="2") as model,
        pytest.raises(ModelUnavailableError) as raised,
    ):
        model.complete([ChatMessage("user", "x")], ModelOptions(tools=(CALCULATE,)))
    assert "malformed tool call" in str(raised.value)
    assert len(server.requests) == 2


def test_neither_text_nor_tool_calls_stays_an_error(server: FakeModelServer, clock: FakeClock) -> None:
    empty = {
        "choices": [
            {"message": {"role": "assistant", "content": None, "tool_calls": []}, "finish_reason": "stop"}
        ]
    }
    server.enqueue(malformed(json.dumps(empty)))
    with (
        compatible(server, clock, MODEL_MAX_ATTEMPTS="1") as model,
        pytest.raises(ModelCallError, match="without text"),
    ):
        model.complete([ChatMessage("user", "x")], ModelOptions(tools=(CALCULATE,)))


def test_options_override_model_temperature_and_limit(server: FakeModelServer, clock: FakeClock) -> None:
    with compatible(server, clock, MODEL_MAX_OUTPUT_TOKENS="64") as model:
        answer = model.complete(
            [ChatMessage("user", "x")],
            ModelOptions(model="other-model", temperature=0.0, max_output_tokens=9),
        )
        model.complete([ChatMessage("user", "y")])
    assert answer.model == "other-model"
    first, second = server.requests
    assert (first.body["model"], first.body["temperature"], first.body["max_tokens"]) == (
        "other-model",
        0.0,
        9,
    )
    assert (second.body["model"], second.body["max_tokens"]) == ("test-model", 64)
    assert "temperature" not in second.body


def test_azure_model_override_routes_to_that_deployment(clock: FakeClock) -> None:
    with FakeModelServer() as server, azure(server, clock, AZURE_OPENAI_API_KEY="azure-key-1234") as model:
        model.complete([ChatMessage("user", "x")])
        model.complete([ChatMessage("user", "x")], ModelOptions(model="mini-deployment"))
        paths = [r.path for r in server.requests]
        queries = [r.query for r in server.requests]
    assert paths == [
        "/openai/deployments/chat-deployment/chat/completions",
        "/openai/deployments/mini-deployment/chat/completions",
    ]
    assert all(q == {"api-version": "2024-10-21"} for q in queries)


def test_tool_messages_are_sent_in_chat_completions_shape(server: FakeModelServer, clock: FakeClock) -> None:
    call = {"id": "call_a", "name": "calculate", "arguments": '{"expression": "1+1"}'}
    messages = [
        ChatMessage("user", "sum?"),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "2", tool_call_id="call_a"),
    ]
    with compatible(server, clock) as model:
        answer = model.complete(messages, ModelOptions(tools=(CALCULATE,)))
    assert answer.content == ECHO_PREFIX + TOOL_ECHO_PREFIX + "2"
    (request,) = server.requests
    assert request.messages[1]["tool_calls"] == [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "calculate", "arguments": '{"expression": "1+1"}'},
        }
    ]
    assert request.messages[2] == {"role": "tool", "content": "2", "tool_call_id": "call_a"}
