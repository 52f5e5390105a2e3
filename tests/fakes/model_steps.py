"""Script steps for the fake model server: what it answers to the next chat request.

Steps are plain JSON-able dicts so they can also be sent to a server in another process
(`POST /_script`). Build them with the helpers here rather than by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Step = dict[str, Any]

STEP_KINDS = ("reply", "echo", "error", "malformed", "disconnect", "tool_calls")

AZURE_CONTENT_FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry."
)


def reply(
    content: str | None,
    *,
    model: str | None = None,
    finish_reason: str = "stop",
    usage: dict[str, int] | None = None,
    delay: float = 0.0,
) -> Step:
    """A 200 chat completion. `model` defaults to the requested model; `usage` to word counts."""
    return {
        "kind": "reply",
        "content": content,
        "model": model,
        "finish_reason": finish_reason,
        "usage": usage,
        "delay": delay,
    }


def echo(*, delay: float = 0.0) -> Step:
    """A 200 reply `echo: <last user message>` (the default step); when the last message is a
    tool result, `echo: tool: <its content>`, so tests see tool results reach the model."""
    return {"kind": "echo", "delay": delay}


def tool_calls(
    calls: Sequence[Mapping[str, Any]],
    content: str | None = None,
    *,
    model: str | None = None,
    finish_reason: str = "tool_calls",
    usage: dict[str, int] | None = None,
    delay: float = 0.0,
) -> Step:
    """A 200 completion whose message asks for tool calls.

    Each call is `{"name", "arguments", "id"?}`: `arguments` a dict (sent JSON-encoded, as
    OpenAI does) or a string sent verbatim (to script malformed JSON); `id` defaults to
    `call_<n>_<name>` by position."""
    encoded = []
    for index, call in enumerate(calls):
        name, arguments = call.get("name"), call.get("arguments", {})
        if not isinstance(name, str) or not name:
            raise ValueError(f"a scripted tool call needs a name, got {call!r:.200}")
        encoded.append(
            {
                "id": str(call.get("id") or f"call_{index}_{name}"),
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return {
        "kind": "tool_calls",
        "tool_calls": encoded,
        "content": content,
        "model": model,
        "finish_reason": finish_reason,
        "usage": usage,
        "delay": delay,
    }


def error(
    status: int,
    *,
    message: str | None = None,
    code: str | None = None,
    type: str | None = None,
    retry_after: float | str | None = None,
    retry_after_ms: float | None = None,
    body: Any = None,
    delay: float = 0.0,
) -> Step:
    """An error status with an OpenAI-shaped error body (or `body` verbatim) and optional Retry-After."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    if body is None:
        body = {
            "error": {"message": message or f"fake error {status}", "type": type, "param": None, "code": code}
        }
    return {"kind": "error", "status": status, "headers": headers, "body": body, "delay": delay}


def content_filter(*, delay: float = 0.0) -> Step:
    """Azure OpenAI's 400 refusal when the prompt trips the content filter."""
    body = {
        "error": {
            "message": AZURE_CONTENT_FILTER_MESSAGE,
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": True, "severity": "high"},
                    "self_harm": {"filtered": False, "severity": "safe"},
                    "sexual": {"filtered": False, "severity": "safe"},
                    "violence": {"filtered": False, "severity": "safe"},
                },
            },
        }
    }
    return error(400, body=body, delay=delay)


def malformed(
    body: str = "this is not json",
    *,
    status: int = 200,
    content_type: str = "application/json",
    delay: float = 0.0,
) -> Step:
    """A response whose body is sent verbatim, e.g. broken JSON or JSON of the wrong shape."""
    return {"kind": "malformed", "status": status, "body": body, "content_type": content_type, "delay": delay}


def disconnect(*, delay: float = 0.0) -> Step:
    """Close the connection without answering."""
    return {"kind": "disconnect", "delay": delay}


def validate_step(step: Any) -> Step:
    if not isinstance(step, dict) or step.get("kind") not in STEP_KINDS:
        raise ValueError(f"a step is a dict with kind in {STEP_KINDS}, got {step!r:.200}")
    delay = step.get("delay", 0.0)
    if not isinstance(delay, int | float) or delay < 0:
        raise ValueError(f"step delay must be a non-negative number, got {delay!r}")
    return step
