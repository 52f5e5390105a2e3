"""The app's function index: exactly the expected functions, triggers, routes and auth levels.

This is what the Azure Functions Python worker reads when it indexes function_app.py, so
a change here is a change to the deployed app's surface.
"""

from __future__ import annotations

from pathlib import Path

from devhost.app_index import IndexedFunction, load_app

REPO = Path(__file__).resolve().parents[2]

EXPECTED_HTTP = {
    "create_thread": ("threads", ("POST",), "FUNCTION"),
    "list_threads": ("threads", ("GET",), "FUNCTION"),
    "get_thread": ("threads/{thread_id}", ("GET",), "FUNCTION"),
    "delete_thread": ("threads/{thread_id}", ("DELETE",), "FUNCTION"),
    "post_message": ("threads/{thread_id}/messages", ("POST",), "FUNCTION"),
    "list_messages": ("threads/{thread_id}/messages", ("GET",), "FUNCTION"),
    "get_message": ("threads/{thread_id}/messages/{message_id}", ("GET",), "FUNCTION"),
    "health": ("health", ("GET",), "ANONYMOUS"),
    "decide_approval": ("threads/{thread_id}/approvals/{call_id}", ("POST",), "FUNCTION"),
    "list_notes": ("threads/{thread_id}/notes", ("GET",), "FUNCTION"),
    "list_agents": ("agents", ("GET",), "FUNCTION"),
    "run_agent": ("agents/{name}/run", ("POST",), "FUNCTION"),
    "thread_events": ("threads/{thread_id}/events", ("GET",), "FUNCTION"),
}
EXPECTED_DURABLE = {
    "thread": ("orchestrationTrigger", "thread"),
    "maintenance": ("orchestrationTrigger", "maintenance"),
    "call_model": ("activityTrigger", "call_model"),
    "run_tool": ("activityTrigger", "run_tool"),
    "sweep_threads": ("activityTrigger", "sweep_threads"),
    "thread_root": ("entityTrigger", "thread"),
    "history_page": ("entityTrigger", "history_page"),
    "history_blob": ("entityTrigger", "history_blob"),
    "message_index": ("entityTrigger", "message"),
    "legacy_history_entity": ("entityTrigger", "history"),
    "caller_usage": ("entityTrigger", "caller"),
    # registered by every DFApp; they back call_http
    "BuiltIn__HttpActivity": ("activityTrigger", "BuiltIn__HttpActivity"),
    "BuiltIn__HttpPollOrchestrator": ("orchestrationTrigger", "BuiltIn__HttpPollOrchestrator"),
}


EXPECTED_OTHER = {"warmup": "warmupTrigger"}


def index() -> dict[str, IndexedFunction]:
    return {f.name: f for f in load_app(REPO)}


def test_function_app_indexes_exactly_the_expected_functions() -> None:
    functions = index()
    assert set(functions) == set(EXPECTED_HTTP) | set(EXPECTED_DURABLE) | set(EXPECTED_OTHER)
    for name, trigger in EXPECTED_OTHER.items():
        assert functions[name].trigger_type == trigger, name
    for name, (route, methods, auth) in EXPECTED_HTTP.items():
        function = functions[name]
        assert function.trigger_type == "httpTrigger", name
        actual = (function.route, function.methods, (function.auth_level or "").upper())
        assert actual == (route, methods, auth), name
    for name, (trigger, durable_name) in EXPECTED_DURABLE.items():
        assert (functions[name].trigger_type, functions[name].durable_name) == (trigger, durable_name), name


def test_every_thread_endpoint_gets_the_durable_client_and_health_does_not() -> None:
    functions = index()
    for name in EXPECTED_HTTP:
        expected = () if name in ("health", "list_agents") else ("client",)
        assert functions[name].client_params == expected, name
