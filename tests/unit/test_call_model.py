"""The `call_model` activity: the plain function, the trigger adapter and its registration."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import azure.durable_functions as df
import pytest
from azure.durable_functions.internal.converters import ActivityTriggerConverter
from azure.functions import meta

from activities import call_model as call_model_module
from activities.call_model import ACTIVITY_NAME, call_model
from agent.errors import (
    InvalidInputError,
    ModelNotConfiguredError,
    ModelRejectedError,
    ModelUnavailableError,
    error_for_failure,
)
from agent.model import ChatMessage, ModelOptions, ModelReply, ModelRequest, Usage
from agent.openai_model import reset_model_client
from agent.settings import DECLARED_SETTINGS, get_settings
from tests.fakes.model_server import ECHO_PREFIX, FakeModelServer, error, reply

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
