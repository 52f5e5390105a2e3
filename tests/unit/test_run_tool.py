"""The `run_tool` activity: every outcome of one tool call, and save_note against a real backend.

The plain `run_tool` is driven with its own registry and agents; the registered activity is
driven by devhost's work-item path on durabletask's in-memory backend (as the Functions
host would call it, durable client binding included), with the app's thread entity there
to receive the notes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
import pytest
from durabletask import task
from durabletask.client import AsyncTaskHubGrpcClient, OrchestrationStatus
from durabletask.entities import EntityInstanceId

from activities import run_tool as run_tool_activity
from agent.errors import InvalidInputError
from agents import Agent, AgentCatalog
from devhost.app_index import index_functions
from devhost.backends import MemoryBackend
from devhost.invoker import Invoker
from devhost.work_items import WorkItemDriver
from entities import storage
from orchestrations import tool_calls
from tools.registry import ToolContext, ToolError, ToolRegistry
from tools.runner import MAX_RESULT_BYTES, ToolCall, ToolRequest, ToolResult, cap, run_tool

# -- a registry and agents of the test's own ---------------------------------------------------

REGISTRY = ToolRegistry()


@REGISTRY.tool
def add(a: int, b: int = 1) -> str:
    """Add two integers.

    Args:
        a: the first.
        b: the second.
    """
    return str(a + b)


@REGISTRY.tool
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"kaboom: {reason}")


@REGISTRY.tool
def refuse() -> str:
    """Fails the way tools report problems to the model."""
    raise ToolError("the printer is out of paper")


@REGISTRY.tool
def structured(count: int) -> dict[str, Any]:
    """Return an object."""
    return {"count": count, "items": ["ä"] * count}


@REGISTRY.tool
def huge(size: int) -> str:
    """Return a long text."""
    return "é" * size


@REGISTRY.tool
async def whoami(context: ToolContext) -> str:
    """Say which thread and call this is."""
    await asyncio.sleep(0)
    return f"{context.thread_id}/{context.call_id}"


@REGISTRY.tool
def blocking(context: ToolContext) -> str:
    """A sync tool, run off the event loop."""
    return f"sync {context.call_id}"


@REGISTRY.tool
def secret() -> str:
    """No agent below may use this."""
    return "the secret"


@REGISTRY.tool
async def slow() -> str:
    """Takes its time."""
    await asyncio.sleep(5)
    return "late"


class LooseTool:
    """An Agent Framework style tool: it checks its own arguments."""

    name = "loose"
    description = "Takes anything."

    def parameters(self) -> dict[str, Any]:
        return {"type": "object", "properties": {}}

    async def invoke(self, *, arguments: dict[str, Any], skip_parsing: bool = False) -> Any:
        return sorted(arguments)


REGISTRY.add_function_tool(LooseTool())

ALL = ("slow", "loose", "add", "explode", "refuse", "structured", "huge", "whoami", "blocking", "ghost")
CATALOG = AgentCatalog(
    [Agent("tester", "d", "i", tools=ALL), Agent("narrow", "d", "i", tools=("add",))], "tester"
)


def run(
    name: str, arguments: str = "{}", *, agent: str = "tester", call_id: str = "call_1", timeout: float = 10
) -> ToolResult:
    request = ToolRequest("thread-1", agent, ToolCall(call_id, name, arguments))
    context = ToolContext("thread-1", call_id)
    return asyncio.run(run_tool(request, REGISTRY, context, find_agent=CATALOG.get, time_limit=timeout))


def test_success() -> None:
    assert run("add", '{"a": 2, "b": 40}') == ToolResult("call_1", "add", "42", is_error=False)
    assert run("add", '{"a": 2}').content == "3"
    assert run("add", '{"a": 2.0}').content == "3"  # integral floats are integers


def test_context_reaches_async_and_sync_tools() -> None:
    assert run("whoami", call_id="call_9").content == "thread-1/call_9"
    assert run("blocking", "", call_id="c2").content == "sync c2"  # empty arguments mean {}


def test_a_slow_tool_times_out() -> None:
    result = run("slow", timeout=0.05)
    assert result.is_error and result.content == "error: slow() did not finish within 0.05 seconds"


def test_self_checking_tools_get_the_decoded_arguments() -> None:
    assert run("loose", '{"b": 1, "a": 2}').content == '["a", "b"]'


def test_non_string_results_are_json() -> None:
    result = run("structured", '{"count": 2}')
    assert not result.is_error
    assert json.loads(result.content) == {"count": 2, "items": ["ä", "ä"]}
    assert "ä" in result.content  # not \\u-escaped: the model reads it


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("add", "{}", "error: add() missing required argument 'a'"),
        ("add", '{"a": "2"}', "error: add() argument 'a' must be an integer, got a string"),
        ("add", '{"a": 1, "c": 2}', "error: add() got an unexpected argument 'c' (arguments: a, b)"),
        ("add", "[1, 2]", "error: add() arguments must be a JSON object, got an array"),
        ("add", '{"a": 1', "error: the arguments for add() are not valid JSON"),
        ("explode", '{"reason": "test"}', "error: explode() raised RuntimeError: kaboom: test"),
        ("refuse", "{}", "error: refuse() the printer is out of paper"),
        ("nope", "{}", "error: there is no tool named 'nope'; available tools: slow, loose, add, explode"),
        ("loose", "[1]", "error: loose() arguments must be a JSON object"),
        ("ghost", "{}", "error: there is no tool named 'ghost'"),
        ("secret", "{}", "error: agent 'tester' may not use the tool named 'secret'"),
    ],
)
def test_problems_become_error_results(name: str, arguments: str, message: str) -> None:
    result = run(name, arguments)
    assert result.is_error
    assert (result.call_id, result.name) == ("call_1", name)
    assert result.content.startswith(message), result.content


def test_an_agent_may_use_only_its_tools() -> None:
    assert run("add", '{"a": 1}', agent="narrow").content == "2"
    refused = run("explode", '{"reason": "x"}', agent="narrow")
    assert refused.is_error
    assert (
        refused.content == "error: agent 'narrow' may not use the tool named 'explode'; available tools: add"
    )
    unknown = run("add", '{"a": 1}', agent="nobody")
    assert unknown.is_error and "unknown agent 'nobody'" in unknown.content


def test_long_results_are_cut_with_a_note() -> None:
    result = run("huge", json.dumps({"size": 20_000}))  # 40,000 bytes of UTF-8
    assert not result.is_error
    assert len(result.content.encode()) <= MAX_RESULT_BYTES
    assert result.content.endswith("[truncated: the result had 40000 bytes; this is the first part]")
    assert result.content.startswith("é" * 100)
    assert "\ufffd" not in result.content  # never a split character
    exact = run("huge", json.dumps({"size": MAX_RESULT_BYTES // 2}))
    assert exact.content == "é" * (MAX_RESULT_BYTES // 2)
    assert cap("abc", 2).endswith("bytes; this is the first part]")


def test_error_messages_are_capped_too() -> None:
    result = run("explode", json.dumps({"reason": "x" * 40_000}))
    assert result.is_error and len(result.content.encode()) <= MAX_RESULT_BYTES


def test_request_and_result_round_trip() -> None:
    request = ToolRequest("t", "assistant", ToolCall("c1", "calculate", '{"expression": "1+1"}'))
    data = request.to_dict()
    assert data == {
        "thread_id": "t",
        "agent": "assistant",
        "call": {"id": "c1", "name": "calculate", "arguments": '{"expression": "1+1"}'},
    }
    assert ToolRequest.from_dict(json.loads(json.dumps(data))) == request
    # decoded arguments are tolerated (encoded again)
    loose = ToolRequest.from_dict({**data, "call": {"id": "c1", "name": "calculate", "arguments": {"a": 1}}})
    assert loose.call.arguments == '{"a": 1}'
    result = ToolResult("c1", "calculate", "2", is_error=False)
    assert result.to_dict() == {"call_id": "c1", "name": "calculate", "content": "2", "is_error": False}
    assert ToolResult.from_dict(result.to_dict()) == result


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {"thread_id": "t", "agent": "a"},
        {"thread_id": "", "agent": "a", "call": {"id": "c", "name": "n"}},
        {"thread_id": "t", "agent": "a", "call": {"name": "n"}},
        {"thread_id": "t", "agent": 3, "call": {"id": "c", "name": "n"}},
    ],
)
def test_malformed_requests_raise(bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        ToolRequest.from_dict(bad)


# -- the registered activity on a real backend ---------------------------------------------------


def probe_app() -> df.DFApp:
    """The app's thread entity and run_tool activity, and an orchestration that runs calls in turn."""
    app = df.DFApp()
    app.register_functions(storage.bp)
    app.register_functions(run_tool_activity.bp)

    @app.orchestration_trigger(context_name="context", orchestration="probe")
    def probe(context: task.OrchestrationContext, requests: Any) -> Generator[task.Task[Any], Any, list[Any]]:
        results: list[Any] = []
        for request in requests:
            results.append((yield context.call_activity("run_tool", input=request)))
        return results

    return app


def test_activity_binds_the_durable_client() -> None:
    app = df.DFApp()
    app.register_functions(run_tool_activity.bp)
    (function,) = [f for f in app.get_functions() if f.get_function_name() == "run_tool"]
    bindings = sorted((json.loads(b) for b in function.get_raw_bindings()), key=lambda b: b["type"])
    assert [(b["type"], b["name"]) for b in bindings] == [
        ("activityTrigger", "request"),
        ("durableClient", "client"),
    ]


async def run_probe(requests: list[dict[str, Any]]) -> tuple[list[Any], Any]:
    backend = MemoryBackend()
    backend.start()
    invoker = Invoker(json.dumps({"taskHubName": "test", "rpcBaseUrl": backend.address}), ".")
    driver = WorkItemDriver(backend.address, index_functions(probe_app()), invoker)
    runner = asyncio.create_task(driver.run())
    client = AsyncTaskHubGrpcClient(host_address=backend.address)
    try:
        instance = await client.schedule_new_orchestration("probe", input=requests)
        state = await client.wait_for_orchestration_completion(instance, timeout=30)
        assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED, state
        results = json.loads(state.serialized_output or "null")
        root = EntityInstanceId("thread", "notes-thread")
        deadline = time.monotonic() + 20
        while True:  # signals are processed after the activity returned
            notes = (await entity_state(client, root) or {}).get("notes", [])
            if len(notes) >= 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # room for a wrongly doubled note to show up
        return results, await entity_state(client, root)
    finally:
        await client.close()
        await driver.stop()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        invoker.close()
        backend.stop()


async def entity_state(client: AsyncTaskHubGrpcClient, entity_id: EntityInstanceId) -> Any:
    entity = await client.get_entity(entity_id)
    state = entity.get_state() if entity else None
    return json.loads(state) if isinstance(state, str) else state


def note_call(call_id: str, text: str) -> dict[str, Any]:
    request = ToolRequest(
        "notes-thread", "assistant", ToolCall(call_id, "save_note", json.dumps({"text": text}))
    )
    return request.to_dict()


def test_save_note_stores_one_note_per_call_id_through_the_real_activity() -> None:
    requests = [
        note_call("call_a", "first note"),
        note_call("call_a", "first note"),  # the activity ran again (at-least-once): same id
        note_call("call_b", "second note"),
        note_call("call_c", "   "),  # refused before any signal
        ToolRequest("notes-thread", "calculator", ToolCall("call_d", "save_note", '{"text": "x"}')).to_dict(),
        ToolRequest(
            "notes-thread", "assistant", ToolCall("call_e", "calculate", '{"expression": "6*7"}')
        ).to_dict(),
    ]
    results, state = asyncio.run(run_probe(requests))
    parsed = [ToolResult.from_dict(r) for r in results]
    assert [(r.call_id, r.is_error) for r in parsed] == [
        ("call_a", False),
        ("call_a", False),
        ("call_b", False),
        ("call_c", True),
        ("call_d", True),
        ("call_e", False),
    ]
    assert parsed[0].content == "Saved the note."
    assert "the note is empty" in parsed[3].content
    assert "agent 'calculator' may not use the tool named 'save_note'" in parsed[4].content
    assert parsed[5].content == "42"
    notes = state["notes"]
    assert [(n["id"], n["text"]) for n in notes] == [("call_a", "first note"), ("call_b", "second note")]
    assert all(n["created_at"].endswith("Z") for n in notes)


# -- how the orchestration reads an approval decision ------------------------------------------


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        ({"approve": True, "reason": "fine"}, (True, "fine")),
        ({"approve": True}, (True, "")),
        ({"approve": False, "reason": "not now"}, (False, "not now")),
        ({"approve": "yes"}, (False, "")),  # only true approves
        ({"approve": True, "reason": 7}, (True, "")),
        (None, (False, "the decision was not understood")),
        ("approve", (False, "the decision was not understood")),
    ],
)
def test_anything_but_approve_true_is_a_denial(decision: Any, expected: tuple[bool, str]) -> None:
    assert tool_calls._decision(decision) == expected
