"""What the model client says when a call fails: the endpoint, the cause and the fix.

Errors reach thread history and logs, so each names the deployment or model and what to
check, never a key; a body the client cannot read is left out rather than quoted.
"""

from __future__ import annotations

import json

import pytest

from agent.errors import ModelCallError, ModelRejectedError
from tests.fakes.clock import FakeClock
from tests.fakes.model_server import FakeModelServer, error, malformed, reply
from tests.unit.model_client_support import API_KEY, FakeCredential, ask, azure, compatible


def test_errors_name_the_azure_deployment_and_what_came_back(
    server: FakeModelServer, clock: FakeClock
) -> None:
    target = f"Azure OpenAI deployment 'chat-deployment' at {server.root_url}"
    server.enqueue(malformed("<html>busy</html>", content_type="text/html"))
    with azure(server, clock, AZURE_OPENAI_API_KEY=API_KEY, MODEL_MAX_ATTEMPTS="1") as model:
        with pytest.raises(ModelCallError) as raised:
            ask(model)
        assert f"{target} answered HTTP 200 with a body that is not JSON (content-type text/html)" in str(
            raised.value
        )
        server.enqueue(reply(None, finish_reason=""))
        with pytest.raises(ModelCallError) as raised:
            ask(model)
        assert f"{target} returned a completion without text (finish_reason none)" in str(raised.value)


def test_tool_calls_that_are_not_a_list_are_a_malformed_completion(
    server: FakeModelServer, clock: FakeClock
) -> None:
    body = {
        "choices": [{"message": {"content": "x", "tool_calls": "call it"}, "finish_reason": "tool_calls"}]
    }
    server.enqueue(malformed(json.dumps(body)))
    with compatible(server, clock, MODEL_MAX_ATTEMPTS="1") as model, pytest.raises(ModelCallError) as raised:
        ask(model)
    assert "returned a malformed completion (tool_calls)" in str(raised.value)


def test_a_plain_text_error_body_is_quoted(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(error(400, body="  the proxy refused this request  "))
    with compatible(server, clock) as model, pytest.raises(ModelRejectedError) as raised:
        ask(model)
    assert "rejected the request with HTTP 400: the proxy refused this request." in str(raised.value)


def test_a_configured_key_is_redacted_even_when_it_does_not_look_like_one(
    server: FakeModelServer, clock: FakeClock
) -> None:
    server.enqueue(error(400, message="the key open-sesame-please is not allowed here"))
    with (
        compatible(server, clock, OPENAI_API_KEY="open-sesame-please") as model,
        pytest.raises(ModelRejectedError) as raised,
    ):
        ask(model)
    assert "open-sesame-please" not in str(raised.value) and "is not allowed here" in str(raised.value)


def test_azure_rejections_name_the_fix_word_for_word(server: FakeModelServer, clock: FakeClock) -> None:
    target = f"Azure OpenAI deployment 'chat-deployment' at {server.root_url}"
    role = (
        "Check that the app's identity (DefaultAzureCredential) has the 'Cognitive Services OpenAI User' "
        "role on this Azure OpenAI resource (role assignments can take minutes to apply)."
    )
    expected = {
        400: "The request was invalid for this deployment; check the model supports chat completions.",
        401: role,
        403: role,
    }
    with azure(server, clock, FakeCredential()) as model:
        for status, hint in expected.items():
            server.enqueue(error(status, message="no"))
            with pytest.raises(ModelRejectedError) as raised:
                ask(model)
            assert str(raised.value) == f"{target} rejected the request with HTTP {status}: no. {hint}"


def test_an_error_message_that_is_not_text_is_left_out(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(error(400, body={"error": {"message": ["zebra-text"], "code": None}}))
    with compatible(server, clock) as model, pytest.raises(ModelRejectedError) as raised:
        ask(model)
    assert "HTTP 400. " in str(raised.value) and "zebra-text" not in str(raised.value)


def test_key_rejections_say_what_to_check_and_never_show_the_key(
    server: FakeModelServer, clock: FakeClock
) -> None:
    target = f"Azure OpenAI deployment 'chat-deployment' at {server.root_url}"
    server.enqueue(
        error(401, message="key plain-words-key is wrong"), error(422, message="unprocessable request")
    )
    with azure(server, clock, AZURE_OPENAI_API_KEY="plain-words-key") as model:
        with pytest.raises(ModelRejectedError) as wrong_key:
            ask(model)
        with pytest.raises(ModelRejectedError) as no_hint:
            ask(model)
    assert str(wrong_key.value) == (
        f"{target} rejected the request with HTTP 401: key [redacted] is wrong. Check that "
        "AZURE_OPENAI_API_KEY is a key of this Azure OpenAI resource."
    )
    assert str(no_hint.value) == f"{target} rejected the request with HTTP 422: unprocessable request."


def test_a_timed_out_attempt_names_the_endpoint_and_the_limit(
    server: FakeModelServer, clock: FakeClock
) -> None:
    server.enqueue(reply("too late", delay=30.0))
    with (
        compatible(server, clock, MODEL_TIMEOUT_SECONDS="0.3", MODEL_MAX_ATTEMPTS="1") as model,
        pytest.raises(ModelCallError) as raised,
    ):
        ask(model)
    assert str(raised.value).endswith(
        f"request to model 'test-model' at {server.base_url} timed out after 0.3s"
    )


def test_an_error_body_that_is_a_list_is_left_out(server: FakeModelServer, clock: FakeClock) -> None:
    server.enqueue(error(400, body=["zebra-list"]))
    with compatible(server, clock) as model, pytest.raises(ModelRejectedError) as raised:
        ask(model)
    assert "HTTP 400. " in str(raised.value) and "zebra-list" not in str(raised.value)
