"""The tool registry (schemas from signatures and docstrings, argument checks) and the built-in tools."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Optional

import pytest

import tools
from agent.storage_rules import MAX_NOTE_BYTES
from tools.builtin import MAX_EXPRESSION_CHARS, calculate, current_time, evaluate, format_number, save_note
from tools.registry import (
    ArgumentError,
    ToolContext,
    ToolDefinitionError,
    ToolError,
    ToolRegistry,
    check_arguments,
    parse_docstring,
    schema_for,
    spec_from_function,
)

# -- schemas from annotations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "schema"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (list[str], {"type": "array", "items": {"type": "string"}}),
        (list[list[int]], {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}),
        (Literal["c", "f"], {"type": "string", "enum": ["c", "f"]}),
        (Literal[1, 2, 3], {"type": "integer", "enum": [1, 2, 3]}),
        (str | None, {"type": ["string", "null"]}),
        (Optional[int], {"type": ["integer", "null"]}),  # noqa: UP045 - the old spelling works too
        (Literal["a", "b"] | None, {"type": ["string", "null"], "enum": ["a", "b", None]}),
        (list[float] | None, {"type": ["array", "null"], "items": {"type": "number"}}),
    ],
)
def test_schema_for_each_supported_annotation(annotation: Any, schema: dict[str, Any]) -> None:
    assert schema_for(annotation) == schema


@pytest.mark.parametrize(
    ("annotation", "complaint"),
    [
        (dict[str, int], "unsupported annotation"),
        (list, "item type"),
        (int | str, "only `X | None`"),
        (Literal["a", 1], "Literal values"),
        (bytes, "unsupported annotation"),
    ],
)
def test_unsupported_annotations_are_refused(annotation: Any, complaint: str) -> None:
    with pytest.raises(ToolDefinitionError, match=complaint):
        schema_for(annotation, "here")


def forecast(
    city: str,
    days: int = 3,
    unit: Literal["celsius", "fahrenheit"] = "celsius",
    hours: list[int] | None = None,
    detailed: bool = False,
) -> str:
    """Get the weather forecast
    for a city.

    Longer explanation that the model does not need.

    Args:
        city: the city name, e.g. "Oslo".
        days (int): how many days ahead,
            at most 7.
        unit: the temperature unit.

    Returns:
        the forecast as text.
    """
    return city


def test_spec_from_a_documented_function() -> None:
    spec = spec_from_function(forecast)
    assert spec.name == "forecast"
    assert spec.description == "Get the weather forecast for a city."
    assert spec.needs_approval is False
    assert spec.context_parameter is None
    assert spec.parameters == {
        "type": "object",
        "properties": {
            "city": {"description": 'the city name, e.g. "Oslo".', "type": "string"},
            "days": {"description": "how many days ahead, at most 7.", "type": "integer", "default": 3},
            "unit": {
                "description": "the temperature unit.",
                "type": "string",
                "enum": ["celsius", "fahrenheit"],
                "default": "celsius",
            },
            "hours": {"type": ["array", "null"], "items": {"type": "integer"}},
            "detailed": {"type": "boolean", "default": False},
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert spec.schema() == {
        "type": "function",
        "function": {"name": "forecast", "description": spec.description, "parameters": spec.parameters},
    }
    assert tools.describe(spec) == {
        "name": "forecast",
        "description": spec.description,
        "parameters": spec.parameters,
        "needs_approval": False,
    }


def test_docstring_shapes() -> None:
    assert parse_docstring("One line.") == ("One line.", {})
    assert parse_docstring("Summary.\n\nArgs:\n    a: first\n    b: second\n") == (
        "Summary.",
        {"a": "first", "b": "second"},
    )
    # Args right after the summary, a Returns section that ends it, typed names, continuations
    doc = "Do it.\nArgs:\n    x (str): the x\n        continued\n    y: why\nReturns:\n    z: not an arg\n"
    assert parse_docstring(doc) == ("Do it.", {"x": "the x continued", "y": "why"})
    assert parse_docstring("Summary.\n\nParameters:\n  n: count\n") == ("Summary.", {"n": "count"})
    assert parse_docstring("") == ("", {})


def test_a_context_parameter_is_hidden_from_the_model() -> None:
    spec = tools.get_tool("save_note")
    assert spec is not None
    assert spec.context_parameter == "context"
    assert set(spec.parameters["properties"]) == {"text"}
    assert spec.needs_approval is True
    time_spec = tools.get_tool("current_time")
    assert time_spec is not None and time_spec.parameters["properties"] == {}
    assert "required" not in time_spec.parameters


def test_definition_errors() -> None:
    registry = ToolRegistry()

    def undocumented(a: int) -> str:
        return str(a)

    def unannotated(a) -> str:  # type: ignore[no-untyped-def]
        """Doc."""
        return str(a)

    def variadic(*numbers: int) -> str:
        """Doc."""
        return ""

    def stale_doc(a: int) -> str:
        """Doc.

        Args:
            b: a parameter that was renamed.
        """
        return ""

    def object_default(a: float = float("nan")) -> str:
        """Doc."""
        return ""

    cases: list[tuple[Callable[..., Any], str]] = [
        (undocumented, "needs a docstring"),
        (unannotated, "needs a type annotation"),
        (variadic, "plain named parameter"),
        (stale_doc, r"unknown parameters \['b'\]"),
        (object_default, "not a JSON value"),
    ]
    for function, complaint in cases:
        with pytest.raises(ToolDefinitionError, match=complaint):
            registry.tool(function)
    assert len(registry) == 0


def test_registry_names_duplicates_and_decorator_forms() -> None:
    registry = ToolRegistry()

    @registry.tool
    def ping() -> str:
        """Answer pong."""
        return "pong"

    @registry.tool(needs_approval=True, name="send-mail")
    def send(to: str) -> str:
        """Send a mail."""
        return to

    assert ping() == "pong"  # the decorator returns the function itself
    assert registry.names() == ["ping", "send-mail"]
    mail = registry.get("send-mail")
    assert mail is not None and mail.needs_approval and mail.function is send
    assert registry.get("nope") is None
    assert "ping" in registry and "nope" not in registry

    with pytest.raises(ToolDefinitionError, match="already registered"):
        registry.tool(name="ping")(send)
    with pytest.raises(ToolDefinitionError, match="must match"):
        registry.tool(name="has space")(send)
    assert [s["function"]["name"] for s in registry.schemas(["send-mail", "ping"])] == ["send-mail", "ping"]
    with pytest.raises(ToolDefinitionError, match="unknown tool 'nope'"):
        registry.schemas(["ping", "nope"])


def test_the_app_registry_holds_the_builtins() -> None:
    assert {"current_time", "calculate", "save_note"} <= set(tools.REGISTRY.names())
    schemas = tools.tool_schemas(["calculate"])
    assert schemas == [tools.REGISTRY.get("calculate").schema()]  # type: ignore[union-attr]
    assert schemas[0]["function"]["parameters"]["required"] == ["expression"]


# -- argument checks ---------------------------------------------------------------------------

FORECAST = spec_from_function(forecast).parameters


def test_check_arguments_accepts_and_converts() -> None:
    assert check_arguments(FORECAST, {"city": "Oslo"}) == {"city": "Oslo"}
    checked = check_arguments(
        FORECAST, {"city": "Oslo", "days": 2.0, "hours": [1, 2.0], "unit": "fahrenheit"}
    )
    assert checked == {"city": "Oslo", "days": 2, "hours": [1, 2], "unit": "fahrenheit"}
    assert type(checked["days"]) is int
    assert check_arguments(FORECAST, {"city": "x", "hours": None}) == {"city": "x", "hours": None}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([1], "arguments must be a JSON object, got an array"),
        ({}, "missing required argument 'city'"),
        ({"city": "x", "when": 1}, "got an unexpected argument 'when'"),
        ({"city": 3}, "argument 'city' must be a string, got an integer"),
        ({"city": "x", "days": True}, "argument 'days' must be an integer, got a boolean"),
        ({"city": "x", "days": 1.5}, "argument 'days' must be an integer, got a number"),
        (
            {"city": "x", "unit": "kelvin"},
            'argument \'unit\' must be one of "celsius", "fahrenheit", got "kelvin"',
        ),
        ({"city": "x", "hours": [1, "2"]}, r"argument 'hours'\[1\] must be an integer, got a string"),
        ({"city": "x", "hours": 5}, "argument 'hours' must be an array or null, got an integer"),
        ({"city": None}, "argument 'city' must be a string, got null"),
    ],
)
def test_check_arguments_refusals(arguments: Any, message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        check_arguments(FORECAST, arguments)


# -- calculate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("2 ** 3 ** 2", "512"),  # right-associative
        ("-2 ** 2", "-4"),  # unary minus binds looser than **
        ("(-2) ** 2", "4"),
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 % 3", "1"),
        ("7 / 2", "3.5"),
        ("10 / 4 * 2", "5"),
        ("0.1 + 0.2", "0.3"),
        ("+5 - -5", "10"),
        ("2 ** -1", "0.5"),
        ("2 ** 100", str(2**100)),
        ("1e3 * 2", "2000"),
        ("  3  ", "3"),
    ],
)
def test_calculate_valid(expression: str, result: str) -> None:
    assert calculate(expression) == result


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("9**9**9", "exponents are limited"),
        ("10 ** 5000", "too large"),
        ("2 ** 4097", "too large"),
        ("1e308 * 10", "too large"),
        ("(-8) ** 0.5", "not a real number"),
        ("__import__('os').system('echo hi')", "function calls are not supported"),
        ("abs(-1)", "function calls are not supported"),
        ("x + 1", "names and constants are not supported"),
        ("2 ^ 3", r"use \*\*"),
        ("1 < 2", "Compare is not supported"),
        ("'a' * 3", "only numbers are supported"),
        ("True + 1", "only numbers are supported"),
        ("1j * 2", "only numbers are supported"),
        ("[1, 2]", "List is not supported"),
        ("1 +", "not an arithmetic expression"),
        ("", "empty"),
        ("1" * (MAX_EXPRESSION_CHARS + 1), "longer than"),
        ("(" * 240 + "1" + ")" * 240, "not an arithmetic expression"),
    ],
)
def test_calculate_refusals(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(expression)


def test_format_number() -> None:
    assert format_number(3) == "3"
    assert format_number(2.0) == "2"
    assert format_number(1 / 3) == "0.333333333333333"
    assert format_number(1e20) == "1e+20"


# -- current_time and save_note (without a backend; test_run_tool drives a real one) -----------


def test_current_time_reads_the_context_clock() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)
    context = ToolContext("t", "c", now=lambda: moment)
    assert current_time(context) == "2026-03-04T05:06:07.890Z"
    real = current_time(ToolContext("t", "c"))
    parsed = datetime.fromisoformat(real.removesuffix("Z")).replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 5


class RecordingClient:
    def __init__(self) -> None:
        self.signals: list[tuple[Any, str, Any]] = []

    async def signal_entity(self, entity: Any, operation: str, input: Any = None) -> None:
        self.signals.append((entity, operation, input))


def test_save_note_signals_the_thread_root_entity() -> None:
    client = RecordingClient()
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    context = ToolContext("thread-9", "call_7", client=client, now=lambda: moment)  # type: ignore[arg-type]
    assert asyncio.run(save_note("buy milk", context)) == "Saved the note."
    ((entity, operation, payload),) = client.signals
    assert (entity.entity, entity.key, operation) == ("thread", "thread-9", "add_note")
    assert payload == {"id": "call_7", "text": "buy milk", "created_at": "2026-01-02T03:04:05.000Z"}


@pytest.mark.parametrize(
    ("text", "message"),
    [("   ", "the note is empty"), ("x" * (MAX_NOTE_BYTES + 1), f"at most {MAX_NOTE_BYTES}")],
)
def test_save_note_refuses_before_signalling(text: str, message: str) -> None:
    client = RecordingClient()
    context = ToolContext("t", "c", client=client)  # type: ignore[arg-type]
    with pytest.raises(ToolError, match=message):
        asyncio.run(save_note(text, context))
    assert client.signals == []
    with pytest.raises(ToolError, match="no durable client"):
        asyncio.run(save_note("fine", ToolContext("t", "c")))


# -- Microsoft Agent Framework tools (an optional extra) ---------------------------------------


class StandIn:
    """What the registry reads of an `agent_framework.FunctionTool`."""

    name = "lookup"
    description = "Look a word up."
    approval_mode = "always_require"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def parameters(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}

    async def invoke(self, *, arguments: dict[str, Any], skip_parsing: bool = False) -> Any:
        self.calls.append(arguments)
        if "word" not in arguments:

            class _FunctionArgumentValidationError(Exception):
                pass

            raise _FunctionArgumentValidationError("Invalid arguments for 'lookup': word is required")
        return {"word": arguments["word"], "skip_parsing": skip_parsing}


def test_agent_framework_style_tools_register_and_run() -> None:
    registry = ToolRegistry()
    stand_in = StandIn()
    spec = registry.add_function_tool(stand_in)
    assert (spec.name, spec.description, spec.needs_approval, spec.check_schema) == (
        "lookup",
        "Look a word up.",
        True,
        False,
    )
    assert spec.parameters["required"] == ["word"]
    assert asyncio.run(spec.function(word="durable")) == {"word": "durable", "skip_parsing": True}
    with pytest.raises(ToolError, match="Invalid arguments for 'lookup'"):
        asyncio.run(spec.function())
    assert (
        registry.add_function_tool(
            type("T", (StandIn,), {"name": "t2"})(), needs_approval=False
        ).needs_approval
        is False
    )
    with pytest.raises(ToolDefinitionError, match="not an Agent Framework function tool"):
        registry.add_function_tool(object())


def test_real_agent_framework_tools_when_installed() -> None:
    framework = pytest.importorskip("agent_framework")
    # The optional package is imported at run time, so mypy sees its `tool` as Any; its
    # decorator turns the function into a FunctionTool, which the registry duck-types.
    tool: Callable[..., Callable[[Callable[..., str]], object]] = framework.tool

    @tool(approval_mode="always_require")
    def get_weather(location: str, unit: str = "celsius") -> str:
        """Get the weather for a location."""
        return f"Weather in {location}: 22 {unit}"

    registry = ToolRegistry()
    spec = registry.add_function_tool(get_weather)
    assert spec.needs_approval is True
    assert spec.parameters["required"] == ["location"]
    assert asyncio.run(spec.function(location="Oslo")) == "Weather in Oslo: 22 celsius"
    with pytest.raises(ToolError, match="Invalid arguments"):
        asyncio.run(spec.function())
