"""The HTTP API's pure parts: request bodies and query numbers, tokens, status names,
summaries, reply outcomes and problem details. The routes themselves are tested over HTTP
(tests/integration); these pin the edges that a request rarely reaches."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import azure.functions as func
import pytest
from durabletask.client import AsyncTaskHubGrpcClient, OrchestrationState, OrchestrationStatus

from agent import telemetry
from agent.errors import (
    BackendUnavailableError,
    ConflictError,
    DurableAgentError,
    InvalidInputError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from agent.limits import RateLimitedError
from agent.settings import AuthSettings, get_settings, load_settings
from agent.thread import SCHEMA_VERSION, ThreadStatus
from agents import get_agent
from http_api import agents_api, problems, routes, shapes
from http_api.problems import PROBLEM_TYPE_BASE, json_response, problem
from http_api.threads import ThreadService


def request(
    body: bytes = b"", content_type: str | None = "application/json", params: dict[str, str] | None = None
) -> func.HttpRequest:
    headers = {"content-type": content_type} if content_type is not None else {}
    return func.HttpRequest("POST", "http://localhost/api/x", headers=headers, params=params or {}, body=body)


# -- request bodies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"", 0),
        (b"1", 0),
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b"[[], [], []]", 2),
        (b'{"a": "[[[{{{"}', 1),  # brackets inside strings do not count
        (b'{"a": "\\"[[["}', 1),  # nor after an escaped quote
        (b'{"a": "\\\\"}', 1),  # an escaped backslash ends before the closing quote
        (b'[{"a": "\\\\"}, [[]]]', 3),
    ],
)
def test_json_depth_counts_nesting_outside_strings(raw: bytes, depth: int) -> None:
    assert routes.json_depth(raw) == depth


def test_a_body_nested_exactly_to_the_limit_is_read_and_one_deeper_is_refused() -> None:
    deepest = b"[" * routes.MAX_JSON_DEPTH + b"]" * routes.MAX_JSON_DEPTH
    assert routes._body(request(b'{"a": ' + deepest[1:-1] + b"}"), required=True) == {
        "a": json.loads(deepest[1:-1])
    }
    too_deep = b'{"a": ' + deepest + b"}"
    with pytest.raises(
        InvalidInputError, match=f"^The request body nests JSON deeper than {routes.MAX_JSON_DEPTH} levels"
    ):
        routes._body(request(too_deep), required=True)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/merge-patch+json",
        "APPLICATION/JSON",
        None,
    ],
)
def test_json_bodies_are_accepted_under_any_json_media_type(content_type: str | None) -> None:
    assert routes._body(request(b'{"content": "hi"}', content_type), required=True) == {"content": "hi"}


def test_a_body_that_is_not_json_media_is_refused_naming_its_type() -> None:
    with pytest.raises(
        UnsupportedMediaTypeError,
        match=r"^The request body must be JSON \(Content-Type: application/json\), not text/plain\.$",
    ):
        routes._body(request(b"hi", "text/plain; charset=utf-8"), required=True)


def test_body_size_limit_is_inclusive() -> None:
    filler = b'{"a": "' + b"x" * (routes.MAX_BODY_BYTES - 9) + b'"}'
    assert len(filler) == routes.MAX_BODY_BYTES
    assert routes._body(request(filler), required=True)["a"] == "x" * (routes.MAX_BODY_BYTES - 9)
    over = filler[:-2] + b'x"}'
    with pytest.raises(
        PayloadTooLargeError,
        match=f"^The request body is {routes.MAX_BODY_BYTES + 1} bytes; "
        f"the limit is {routes.MAX_BODY_BYTES} bytes.$",
    ):
        routes._body(request(over), required=True)


def test_an_empty_body_is_an_empty_object_unless_one_is_required() -> None:
    assert routes._body(request(b""), required=False) == {}
    assert routes._body(request(b"  \n "), required=False) == {}
    with pytest.raises(
        InvalidInputError, match=r'^The request needs a JSON body, e\.g\. \{"content": "Hello"\}\.$'
    ):
        routes._body(request(b" "), required=True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{nope", r"^The request body is not valid JSON: "),
        (b"\xff\xfe", r"^The request body is not valid JSON: "),
        (b"[1]", r"^The request body must be a JSON object\.$"),
        (b'"text"', r"^The request body must be a JSON object\.$"),
        (b'{"a": "\\ud800"}', r"^the request body holds text that is not valid Unicode"),
    ],
)
def test_bodies_that_are_not_a_json_object_of_text_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        routes._body(request(raw), required=True)


def test_check_text_names_where_the_bad_text_is() -> None:
    routes.check_text({"a": ["é", "ok"]})
    with pytest.raises(
        InvalidInputError,
        match=r"^'metadata' holds text that is not valid Unicode \(a lone surrogate such as \\ud800\); "
        r"send well-formed UTF-8\.$",
    ):
        routes.check_text({"k": "\udc00"}, "'metadata'")


# -- query numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [(None, 50), ("", 50), ("1", 1), ("200", 200), ("07", 7)])
def test_query_numbers_default_and_accept_their_whole_range(raw: str | None, value: int) -> None:
    params = {"limit": raw} if raw is not None else {}
    assert routes._query_int(request(params=params), "limit", 50, 1, 200) == value


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", r"^Query parameter 'limit' must be from 1 to 200, got 0\.$"),
        ("201", r"^Query parameter 'limit' must be from 1 to 200, got 201\.$"),
        ("ten", r"^Query parameter 'limit' must be an integer from 1 to 200\.$"),
        ("1.5", r"^Query parameter 'limit' must be an integer from 1 to 200\.$"),
    ],
)
def test_query_numbers_out_of_range_or_not_numbers_are_refused(raw: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        routes._query_int(request(params={"limit": raw}), "limit", 50, 1, 200)


# -- tokens, status names, summaries, outcomes ------------------------------------------------


@pytest.mark.parametrize("backend_token", ["", "abc", "a/b+c=", "é" * 40])
def test_continuation_tokens_round_trip_and_are_url_safe(backend_token: str) -> None:
    token = shapes.encode_token(backend_token)
    assert "=" not in token and "+" not in token and "/" not in token
    assert shapes.decode_token(token) == backend_token


@pytest.mark.parametrize(
    "token",
    [
        "!!!",
        shapes.encode_token("x")[:-3],
        "eyJ2IjogMiwgImMiOiAieCJ9",  # {"v": 2, "c": "x"}
        "eyJ2IjogMSwgImMiOiA1fQ",  # {"v": 1, "c": 5}
        "WzEsIDJd",  # [1, 2]
    ],
)
def test_tokens_this_api_did_not_make_are_refused(token: str) -> None:
    with pytest.raises(
        InvalidInputError,
        match=r"^'continuation_token' is not a token this API returned; start again without it\.$",
    ):
        shapes.decode_token(token)


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (OrchestrationStatus.PENDING, "Running"),
        (OrchestrationStatus.CONTINUED_AS_NEW, "Running"),
        (OrchestrationStatus.RUNNING, "Running"),
        (OrchestrationStatus.SUSPENDED, "Suspended"),
        (OrchestrationStatus.COMPLETED, "Completed"),
        (OrchestrationStatus.TERMINATED, "Terminated"),
        (OrchestrationStatus.FAILED, "Failed"),
    ],
)
def test_a_live_thread_is_reported_running_between_generations(
    status: OrchestrationStatus, name: str
) -> None:
    assert shapes.status_name(status) == name


def test_a_summary_lists_only_undecided_approvals_without_their_decision_field() -> None:
    summary = shapes.ThreadSummary(
        thread_id="t",
        agent="a",
        state="awaiting_approval",
        turn=1,
        message_count=2,
        created_at="c",
        updated_at="u",
        runtime_status="Running",
        metadata={"k": "v"},
        generation=2,
        tools=("book",),
        pending_approvals=({"call_id": "c1", "tool": "book"}, {"call_id": "c2", "decision": "approved"}),
    )
    assert summary.to_dict() == {
        "thread_id": "t",
        "agent": "a",
        "state": "awaiting_approval",
        "turn": 1,
        "message_count": 2,
        "created_at": "c",
        "updated_at": "u",
        "runtime_status": "Running",
        "metadata": {"k": "v"},
        "generation": 2,
        "tools": ["book"],
        "pending_approvals": [{"call_id": "c1", "tool": "book"}],
    }


@pytest.mark.parametrize(
    ("message", "reply", "status"),
    [
        (None, None, "queued"),
        ({"seq": 1}, None, "answering"),
        ({"seq": 1}, {"seq": 2, "content": "hi"}, "answered"),
        ({"seq": 1}, {"seq": 2, "content": "", "error": {"code": "x"}}, "failed"),
    ],
)
def test_the_outcome_of_a_message(message: Any, reply: Any, status: str) -> None:
    assert shapes.reply_outcome(message, reply) == {"status": status, "message": message, "reply": reply}


@pytest.mark.parametrize(
    ("usage", "count"), [({"threads": 3}, 3), ({}, 0), ({"threads": None}, 0), (None, 0), ([3], 0)]
)
def test_a_callers_thread_count(usage: Any, count: int) -> None:
    assert shapes.thread_count(usage) == count


def test_parse_json_reads_nothing_from_bad_or_empty_text() -> None:
    assert shapes.parse_json('{"a": 1}') == {"a": 1}
    assert shapes.parse_json("{oops") is None
    assert shapes.parse_json("") is None
    assert shapes.parse_json(None) is None


def test_an_old_input_keeps_its_config_at_the_top_level() -> None:
    assert shapes.thread_config({"owner": "o", "agent": "a"}).owner == "o"
    current = {"schema": 2, "config": {"owner": "p"}}
    assert shapes.thread_config(current).owner == "p"


# -- problem details --------------------------------------------------------------------


def test_a_problem_has_the_rfc_9457_fields_and_its_code() -> None:
    response = problem(409, "Taken.", code="conflict", headers={"Retry-After": "3"}, thread_id="t")
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "3"
    assert json.loads(response.get_body()) == {
        "type": f"{PROBLEM_TYPE_BASE}-conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "Taken.",
        "code": "conflict",
        "thread_id": "t",
    }


def test_a_problem_without_a_code_is_about_blank() -> None:
    body = json.loads(problem(404, "No such thread.").get_body())
    assert body == {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "No such thread."}


def test_json_responses_keep_text_as_text() -> None:
    response = json_response({"content": "héllo"}, 201, headers={"Location": "/x"})
    assert (response.status_code, response.mimetype, response.headers["Location"]) == (
        201,
        "application/json",
        "/x",
    )
    assert response.get_body() == '{"content": "héllo"}'.encode()


@pytest.mark.parametrize("backend_token", ["a", "ab", "abcd", "abcde", "abcdef"])
def test_tokens_of_every_length_drop_their_padding_and_read_back(backend_token: str) -> None:
    token = shapes.encode_token(backend_token)
    assert not token.endswith("=")
    assert shapes.decode_token(token) == backend_token


# -- the Agent Framework's run request ------------------------------------------------------


def run_request(
    body: bytes,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
    **params: str,
) -> tuple[str, str | None, bool, bool]:
    all_headers = {"content-type": content_type} if content_type is not None else {}
    req = func.HttpRequest(
        "POST",
        "http://localhost/api/agents/a/run",
        headers={**all_headers, **(headers or {})},
        params=params,
        body=body,
    )
    return agents_api._run_request(req)


def test_a_plain_text_run_is_the_message_itself() -> None:
    assert run_request("héllo; there".encode(), "text/plain; charset=utf-8") == (
        "héllo; there",
        None,
        True,
        True,
    )
    assert run_request(b"hi", None, thread_id="t1") == ("hi", "t1", True, True)
    assert run_request(b"hi", "text/plain", {"x-ms-wait-for-response": " FALSE "}) == (
        "hi",
        None,
        False,
        True,
    )
    assert run_request(b"", "text/plain") == ("", None, True, True)


def test_a_json_run_reads_message_thread_and_wait() -> None:
    body = json.dumps({"message": "hi", "thread_id": "t2", "wait_for_response": False}).encode()
    assert run_request(body, "application/json; charset=utf-8", thread_id="ignored") == (
        "hi",
        "t2",
        False,
        False,
    )
    assert run_request(b'{"message": "hi"}', "application/vnd.api+json") == ("hi", None, True, False)
    assert run_request(b'{"message": "hi", "wait_for_response": 0}', thread_id="t3") == (
        "hi",
        "t3",
        True,
        False,
    )


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"\xff", "text/plain", r"^The message must be UTF-8 text\.$"),
        (b"[" * 33 + b"]" * 33, "application/json", r"^The request body nests JSON too deeply\.$"),
        (b"{no", "application/json", r"^The request body is not valid JSON: "),
        (b"", "application/json", r'^The body needs "message": the text to send to the agent\.$'),
        (
            b'["hi"]',
            "application/json",
            r'^The request body must be a JSON object: \{"message": "\.\.\."\}\.$',
        ),
        (b'{"message": 5}', "application/json", r'^The body needs "message"'),
        (b'{"message": "hi", "thread_id": 5}', "application/json", r"^'thread_id' must be a string\.$"),
        (
            b'{"message": "\\ud800"}',
            "application/json",
            r"^the request body holds text that is not valid Unicode",
        ),
    ],
)
def test_a_bad_run_request_says_what_is_wrong(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        run_request(body, content_type)


def test_a_run_body_may_be_exactly_the_size_limit() -> None:
    assert run_request(b"x" * routes.MAX_BODY_BYTES, "text/plain")[0] == "x" * routes.MAX_BODY_BYTES
    with pytest.raises(
        InvalidInputError, match=rf"^The request body is larger than {routes.MAX_BODY_BYTES} bytes\.$"
    ):
        run_request(b"x" * (routes.MAX_BODY_BYTES + 1), "text/plain")


def test_a_run_body_nested_32_deep_is_read() -> None:
    nested = b'{"message": "hi", "x": ' + b"[" * 31 + b"]" * 31 + b"}"
    assert run_request(nested)[0] == "hi"


def test_a_json_media_type_with_several_parameters_is_still_json() -> None:
    assert run_request(b'{"message": "hi"}', "Application/JSON; charset=utf-8; q=1") == (
        "hi",
        None,
        True,
        False,
    )


def test_a_problem_keeps_text_as_text() -> None:
    assert "café".encode() in problem(400, "No café here.").get_body()


# -- routes' small decisions ------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "depth"), [(b"[][][]", 1), (b'{"a": {}}{"b": {}}', 2), (b"[[]][[]]", 2)])
def test_json_depth_goes_back_up_after_each_close(raw: bytes, depth: int) -> None:
    assert routes.json_depth(raw) == depth


def test_a_refused_media_type_is_quoted_up_to_80_characters() -> None:
    long_type = "text/" + "x" * 200
    with pytest.raises(UnsupportedMediaTypeError) as raised:
        routes._body(request(b"hi", long_type), required=True)
    assert raised.value.message.endswith(f"not {long_type[:80]}.")


def test_a_bad_thread_id_in_the_path_is_named_as_such() -> None:
    bad = func.HttpRequest(
        "GET", "http://localhost/api/threads/x", route_params={"thread_id": "a b"}, body=b""
    )
    with pytest.raises(InvalidInputError, match=r"^The thread id "):
        routes._thread_id(bad)


def test_without_a_principal_header_the_caller_is_told_to_sign_in() -> None:
    settings = dataclasses.replace(load_settings({}), auth=AuthSettings(mode="app_service"))
    with pytest.raises(UnauthorizedError, match=r"^Sign in first: this app serves threads only to"):
        routes.caller_principal({}, settings)
    assert routes.caller_principal({routes.PRINCIPAL_HEADER.upper(): "ann"}, settings) == "ann"
    assert routes.caller_principal({}, load_settings({})) is None


def test_the_default_agent_speaks_with_the_system_prompt_and_others_with_their_instructions() -> None:
    settings = load_settings({"SYSTEM_PROMPT": "Speak like a pirate."})
    assert routes.agent_for(None, settings) == ("assistant", "Speak like a pirate.")
    assert routes.agent_for("assistant", settings) == ("assistant", "Speak like a pirate.")
    name, prompt = routes.agent_for("calculator", settings)
    assert (name, prompt) == ("calculator", get_agent("calculator").instructions)


# -- how a handler's failure becomes a response -------------------------------------------------


def respond(failure: Exception) -> func.HttpResponse:
    async def failing_handler() -> func.HttpResponse:
        raise failure

    return asyncio.run(problems._respond(failing_handler, (), {}))


def test_a_server_side_problem_is_logged_with_the_handler_and_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=problems.logger.name):
        response = respond(BackendUnavailableError("the task hub is away"))
        assert response.status_code == 503
        assert "Retry-After" not in response.headers
        assert [r.getMessage() for r in caplog.records] == ["failing_handler failed: the task hub is away"]
        caplog.clear()
        assert respond(DurableAgentError("a plain 500")).status_code == 500  # 500 itself is logged
        assert [r.getMessage() for r in caplog.records] == ["failing_handler failed: a plain 500"]
        caplog.clear()
        assert respond(InvalidInputError("no")).status_code == 400
        assert respond(ConflictError("taken")).status_code == 409
        assert caplog.records == []  # the caller's own mistakes are not the host's warnings


def test_only_a_rate_limit_says_when_to_retry() -> None:
    limited = respond(RateLimitedError("slow down", retry_after=2.5))
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert json.loads(limited.get_body())["code"] == "rate_limited"
    assert "Retry-After" not in respond(InvalidInputError("no")).headers


def test_an_unexpected_error_is_a_500_problem_without_its_details(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=problems.logger.name):
        response = respond(KeyError("secret-internal-detail"))
    assert response.status_code == 500
    body = json.loads(response.get_body())
    assert (body["code"], body["status"]) == ("internal", 500)
    assert body["detail"] == "The server hit an unexpected error; see the host log for details."
    assert "secret-internal-detail" not in response.get_body().decode()
    (record,) = caplog.records
    assert record.getMessage() == "failing_handler failed unexpectedly" and record.exc_info is not None


def test_a_bad_telemetry_setting_does_not_stop_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "not a connection string")
    monkeypatch.setattr(telemetry, "_configured", None)
    get_settings.cache_clear()
    try:
        problems._ensure_telemetry()  # the handler reports the setting; this must not raise
    finally:
        get_settings.cache_clear()


# -- times and legacy threads ------------------------------------------------------------------


def test_utc_now_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: far from UTC all year
    time.tzset()
    try:
        stamp = shapes.utc_now()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert stamp.endswith("Z") and len(stamp) == len("2026-12-03T06:00:00.000Z")
    read = datetime.fromisoformat(stamp.removesuffix("Z")).replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - read) < timedelta(hours=1)


def instance(custom_status: Any = None, input_: Any = None) -> OrchestrationState:
    return OrchestrationState(
        instance_id="t",
        name="thread",
        runtime_status=OrchestrationStatus.RUNNING,
        created_at=datetime(2026, 1, 1),
        last_updated_at=datetime(2026, 1, 1),
        serialized_input=None if input_ is None else json.dumps(input_),
        serialized_output=None,
        serialized_custom_status=None if custom_status is None else json.dumps(custom_status),
        failure_details=None,
    )


def test_a_thread_is_legacy_only_without_a_current_status_or_input() -> None:
    status = ThreadStatus(state="idle", turn=1, message_count=2, last_seq=2, updated_at="x", agent="a")
    current_input = {"schema": SCHEMA_VERSION, "config": {"owner": "o"}}
    old_input = {"owner": "o", "history": []}
    assert shapes.is_legacy(instance(None, old_input)) is True
    assert shapes.is_legacy(instance(None, None)) is True
    assert shapes.is_legacy(instance(None, current_input)) is False
    assert shapes.is_legacy(instance(status.to_dict(), old_input)) is False  # migrated this step
    assert shapes.is_legacy(instance({"state": "legacy"}, old_input)) is True


def test_a_thread_between_generations_keeps_its_turn_and_time() -> None:
    """While a thread from before paging migrates, its new generation has published no
    status yet: the summary takes the turn from the old input and the time from the instance."""
    old_input = {"turn": 4, "owner": None, "metadata": {"user": "ada"}, "created_at": "2026-01-01T00:00:00Z"}
    moment = instance(None, old_input)
    moment = dataclasses.replace(moment, last_updated_at=datetime(2026, 5, 6, 7, 8, 9, 123000))
    summary = ThreadService(cast(AsyncTaskHubGrpcClient, None))._summary(moment, message_count=8)
    assert (summary.turn, summary.message_count, summary.state) == (4, 8, "idle")
    assert summary.updated_at == "2026-05-06T07:08:09.123Z"
    assert summary.metadata == {"user": "ada"}
    # a backend that keeps no update time: the creation time stands in
    unknown = dataclasses.replace(moment, last_updated_at=datetime(1970, 1, 1))
    assert ThreadService(cast(AsyncTaskHubGrpcClient, None))._summary(unknown).updated_at == (
        "2026-01-01T00:00:00Z"
    )
    # a published status wins over both
    status = ThreadStatus(state="thinking", turn=5, message_count=9, last_seq=9, updated_at="s", agent="a")
    published = dataclasses.replace(moment, serialized_custom_status=json.dumps(status.to_dict()))
    current = ThreadService(cast(AsyncTaskHubGrpcClient, None))._summary(published)
    assert (current.turn, current.updated_at, current.state) == (5, "s", "thinking")
