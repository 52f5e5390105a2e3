"""Running one tool call the model asked for: the logic behind the `run_tool` activity.

The model's request can be wrong in many ways (a tool that does not exist or that its agent
may not use, arguments that are not JSON or do not fit the schema) and the tool itself can
fail. None of that may fail the activity: each becomes a `ToolResult` with `is_error` and
a message the model can act on in its next round. Only a malformed activity input (the
orchestration's bug, not the model's) raises.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from agent.errors import InvalidInputError
from agents import Agent, get_agent
from tools.registry import ArgumentError, ToolContext, ToolError, ToolRegistry, ToolSpec, check_arguments

#: the most a tool result may hold (UTF-8 bytes); longer results are cut with a note
MAX_RESULT_BYTES = 16 * 1024
#: how long one tool may run before its call is answered with a timeout error
TOOL_TIMEOUT_SECONDS = 60.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolCall:
    """One call the model made: `arguments` is the raw JSON text the model sent."""

    id: str
    name: str
    arguments: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        call_id, name, arguments = data.get("id"), data.get("name"), data.get("arguments", "")
        if not isinstance(call_id, str) or not call_id or not isinstance(name, str):
            raise InvalidInputError(f"a tool call needs string 'id' and 'name', got {dict(data)!r:.200}")
        if not isinstance(arguments, str):  # tolerated: already decoded arguments
            arguments = json.dumps(arguments)
        return cls(id=call_id, name=name, arguments=arguments)


@dataclass(frozen=True)
class ToolRequest:
    """Input of the `run_tool` activity."""

    thread_id: str
    agent: str
    call: ToolCall

    def to_dict(self) -> dict[str, Any]:
        return {"thread_id": self.thread_id, "agent": self.agent, "call": asdict(self.call)}

    @classmethod
    def from_dict(cls, data: Any) -> ToolRequest:
        if not isinstance(data, Mapping) or not isinstance(data.get("call"), Mapping):
            raise InvalidInputError(f"a tool request needs a 'call' object, got {data!r:.200}")
        thread_id, agent = data.get("thread_id"), data.get("agent")
        if not isinstance(thread_id, str) or not thread_id or not isinstance(agent, str):
            raise InvalidInputError("a tool request needs string 'thread_id' and 'agent'")
        return cls(thread_id=thread_id, agent=agent, call=ToolCall.from_dict(data["call"]))


@dataclass(frozen=True)
class ToolResult:
    """Output of the `run_tool` activity: what goes back to the model as a `tool` message."""

    call_id: str
    name: str
    content: str
    is_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolResult:
        return cls(
            call_id=str(data["call_id"]),
            name=str(data.get("name", "")),
            content=str(data.get("content", "")),
            is_error=data.get("is_error") is True,
        )


async def run_tool(
    request: ToolRequest,
    registry: ToolRegistry,
    context: ToolContext,
    *,
    find_agent: Callable[[str], Agent] = get_agent,
    time_limit: float = TOOL_TIMEOUT_SECONDS,
) -> ToolResult:
    """Run `request.call` if the thread's agent may use it; every problem is an error result."""
    call = request.call

    def failed(message: str) -> ToolResult:
        log.info("thread %s: tool call %s (%s) failed: %s", request.thread_id, call.id, call.name, message)
        return ToolResult(call.id, call.name, cap(f"error: {message}"), is_error=True)

    try:
        agent = find_agent(request.agent)
    except InvalidInputError as unknown:
        return failed(unknown.message)
    spec = registry.get(call.name)
    if spec is None or call.name not in agent.tools:
        available = ", ".join(t for t in agent.tools if t in registry) or "none"
        why = "there is no tool" if spec is None else f"agent {agent.name!r} may not use the tool"
        return failed(f"{why} named {call.name!r}; available tools: {available}")
    try:
        decoded = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError as bad:
        return failed(f"the arguments for {spec.name}() are not valid JSON ({bad}); send a JSON object")
    try:
        arguments = check_arguments(spec.parameters, decoded) if spec.check_schema else _object(decoded)
    except ArgumentError as mismatch:
        return failed(f"{spec.name}() {mismatch}")
    try:
        async with asyncio.timeout(time_limit):
            value = await _invoke(spec, arguments, context)
    except TimeoutError:
        return failed(f"{spec.name}() did not finish within {time_limit:g} seconds")
    except ToolError as refused:
        return failed(f"{spec.name}() {refused}")
    except Exception as crashed:
        log.warning("tool %s raised", spec.name, exc_info=True)
        return failed(f"{spec.name}() raised {type(crashed).__name__}: {crashed}")
    log.info("thread %s: tool call %s (%s) succeeded", request.thread_id, call.id, call.name)
    return ToolResult(call.id, call.name, cap(_text(value)))


async def _invoke(spec: ToolSpec, arguments: dict[str, Any], context: ToolContext) -> Any:
    if spec.context_parameter is not None:
        arguments = {**arguments, spec.context_parameter: context}
    if inspect.iscoroutinefunction(spec.function):
        return await spec.function(**arguments)
    # A blocking tool must not stall the worker's event loop.
    result = await asyncio.to_thread(spec.function, **arguments)
    return await result if inspect.isawaitable(result) else result


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ArgumentError("arguments must be a JSON object")
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:  # circular or NaN-like values
        return str(value)


def cap(content: str, limit: int = MAX_RESULT_BYTES) -> str:
    """`content` cut to `limit` UTF-8 bytes, with a note saying how much was left out."""
    encoded = content.encode("utf-8", errors="replace")
    if len(encoded) <= limit:
        return content
    note = f"\n[truncated: the result had {len(encoded)} bytes; this is the first part]"
    kept = encoded[: max(limit - len(note.encode()), 0)].decode("utf-8", errors="ignore")
    return kept + note
