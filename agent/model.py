"""The model port: what a turn sends to a chat model and what comes back.

`ModelClient` is a Protocol so the activity can be tested with a scripted fake, and the
real implementation (openai SDK, Azure OpenAI or any compatible endpoint) lives in
`agent.openai_model`. Requests and replies are plain dataclasses that round-trip through
JSON dicts, the form Durable Functions carries between orchestration and activity. A request
names the thread's agent; a reply may ask for tool calls instead of (or besides) text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from agent.errors import InvalidInputError

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat request, in the Chat Completions shape.

    An assistant message may carry `tool_calls` ({"id", "name", "arguments"}); a `tool`
    message answers one of them by `tool_call_id`."""

    role: str
    content: str
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_call_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [dict(c) for c in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChatMessage:
        role, content = data.get("role"), data.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise InvalidInputError(
                f"chat message needs role in {ROLES} and string content, got {data!r:.200}"
            )
        calls = data.get("tool_calls") or ()
        if not isinstance(calls, list | tuple) or not all(isinstance(c, Mapping) for c in calls):
            raise InvalidInputError("chat message 'tool_calls' must be a list of objects")
        call_id = data.get("tool_call_id")
        return cls(
            role=role,
            content=content,
            tool_calls=tuple(dict(c) for c in calls),
            tool_call_id=call_id if isinstance(call_id, str) else None,
        )


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


#: the agent a request names when it names none (agents.DEFAULT_AGENT; spelled here too so
#: this module stays free of the agents package)
DEFAULT_AGENT_NAME = "assistant"


@dataclass(frozen=True)
class ModelOptions:
    """Per-call settings of one completion: the agent's tools and its model overrides."""

    #: tool schemas in the Chat Completions `tools` format; empty means no tools are offered
    tools: tuple[dict[str, Any], ...] = ()
    #: model (or Azure deployment) instead of the configured one
    model: str | None = None
    temperature: float | None = None
    #: instead of MODEL_MAX_OUTPUT_TOKENS
    max_output_tokens: int | None = None


@dataclass(frozen=True)
class ModelRequest:
    """Input of the `call_model` activity."""

    thread_id: str
    turn: int
    messages: list[ChatMessage]
    #: the longest reply (encoded) the thread can store; longer output is cut
    max_reply_bytes: int = 64 * 1024
    #: the thread's agent: the activity sends its tools and model overrides
    agent: str = DEFAULT_AGENT_NAME

    def to_dict(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "turn": self.turn,
            "messages": [m.to_dict() for m in self.messages],
            "max_reply_bytes": self.max_reply_bytes,
            "agent": self.agent,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRequest:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidInputError("model request needs a non-empty 'messages' list")
        return cls(
            thread_id=str(data.get("thread_id", "")),
            turn=int(data.get("turn", 0)),
            messages=[ChatMessage.from_dict(m) for m in messages],
            max_reply_bytes=int(data.get("max_reply_bytes") or 64 * 1024),
            agent=str(data.get("agent") or DEFAULT_AGENT_NAME),
        )


@dataclass(frozen=True)
class ModelReply:
    """Output of the `call_model` activity.

    `tool_calls` are the tools the model wants run, each `{"id", "name", "arguments" (the
    raw JSON text the model sent), "needs_approval"}`; `content` may then be empty."""

    content: str
    model: str
    finish_reason: str
    latency_ms: int
    usage: Usage = field(default_factory=Usage)
    #: True when the content was cut to fit what the thread can store
    truncated: bool = False
    tool_calls: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tool_calls"] = [dict(c) for c in self.tool_calls]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelReply:
        usage = data.get("usage") or {}
        calls = data.get("tool_calls") or ()
        if not isinstance(calls, list | tuple) or not all(isinstance(c, Mapping) for c in calls):
            raise InvalidInputError("model reply 'tool_calls' must be a list of objects")
        return cls(
            tool_calls=tuple(_tool_call(c) for c in calls),
            content=str(data["content"]),
            model=str(data.get("model", "")),
            finish_reason=str(data.get("finish_reason", "")),
            latency_ms=int(data.get("latency_ms", 0)),
            truncated=data.get("truncated") is True,
            usage=Usage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                total_tokens=int(usage.get("total_tokens", 0)),
            ),
        )


def _tool_call(data: Mapping[str, Any]) -> dict[str, Any]:
    call_id, name, arguments = data.get("id"), data.get("name"), data.get("arguments", "")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
        raise InvalidInputError(f"a tool call needs string 'id', 'name' and 'arguments', got {data!r:.200}")
    return {
        "id": call_id,
        "name": name,
        "arguments": arguments,
        "needs_approval": data.get("needs_approval") is True,
    }


class ModelClient(Protocol):
    """Sends one chat completion; raises `ModelCallError` subclasses on failure."""

    def complete(self, messages: list[ChatMessage], options: ModelOptions | None = None) -> ModelReply: ...
