"""The app's built-in tools: the current time, arithmetic, and notes on the thread.

Each is one `@tool` function; their schemas come from the signatures below. They run only
inside the `run_tool` activity (never in the orchestration), so reading the clock or
signalling an entity here is safe under replay.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from durabletask.entities import EntityInstanceId

from agent.contract import THREAD_ENTITY
from agent.storage_rules import MAX_NOTE_BYTES
from agent.thread import utc_text
from tools.registry import ToolContext, ToolError, tool

#: longest expression `calculate` reads
MAX_EXPRESSION_CHARS = 500
#: largest exponent `calculate` evaluates, and the largest integer (in bits) it keeps
MAX_EXPONENT = 10_000
MAX_INTEGER_BITS = 4096

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_HINTS: dict[type[ast.AST], str] = {
    ast.BitXor: "'^' is not a power here; use ** (e.g. 2 ** 8)",
    ast.Name: "names and constants are not supported; write the numbers",
    ast.Call: "function calls are not supported; use + - * / // % ** and parentheses",
}


def utc_timestamp(context: ToolContext) -> str:
    """`context.now()` as ISO 8601 UTC with a Z and milliseconds, as the thread stores times."""
    return utc_text(context.now())


@tool
def current_time(context: ToolContext) -> str:
    """Get the current date and time in UTC, as ISO 8601 (e.g. 2026-01-31T09:30:00.000Z)."""
    return utc_timestamp(context)


@tool
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression and return the result.

    Args:
        expression: numbers with + - * / // % ** and parentheses, e.g. "(2 + 3) * 4 ** 2".
    """
    return format_number(evaluate(expression))


@tool(needs_approval=True)
async def save_note(text: str, context: ToolContext) -> str:
    """Save a short note on this conversation thread for the user to read later.

    Args:
        text: the note, at most 4096 bytes.
    """
    if not text.strip():
        raise ToolError("the note is empty; pass the text to save")
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_NOTE_BYTES:
        raise ToolError(f"the note is {size} bytes; a note holds at most {MAX_NOTE_BYTES}, shorten it")
    if context.client is None:
        raise ToolError("notes cannot be saved here (no durable client)")
    # A signal, not a call: the root entity adds the note idempotently by id, and the id is
    # the tool call's, so an activity that runs twice still saves one note.
    await context.client.signal_entity(
        EntityInstanceId(THREAD_ENTITY, context.thread_id),
        "add_note",
        input={"id": context.call_id, "text": text, "created_at": utc_timestamp(context)},
    )
    return "Saved the note."


# -- arithmetic ----------------------------------------------------------------------------


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression, through `ast` (never eval). Raises ToolError."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    if not expression.strip():
        raise ToolError("the expression is empty")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as bad:
        raise ToolError(f"not an arithmetic expression: {bad.msg}") from None
    except (ValueError, RecursionError, MemoryError):
        raise ToolError("not an arithmetic expression") from None
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("the result is too large") from None
    except RecursionError:
        raise ToolError("the expression is nested too deeply") from None
    return value


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return node.value
        raise ToolError(f"only numbers are supported, got {node.value!r}")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    op = getattr(node, "op", None)
    hint = _HINTS.get(type(op) if op is not None else type(node))
    symbol = type(op).__name__ if op is not None else type(node).__name__
    raise ToolError(hint or f"{symbol} is not supported; use + - * / // % ** and parentheses")


def _check_power(base: Number, exponent: Number) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponents are limited to {MAX_EXPONENT}")
    # (bits - 1) * exponent bounds the result's size from below: refuse before computing it
    too_big = (
        max(abs(base).bit_length() - 1, 0) * exponent > MAX_INTEGER_BITS if isinstance(base, int) else False
    )
    if isinstance(exponent, int) and exponent > 0 and too_big:
        raise ToolError("the result is too large")
    if (
        isinstance(base, int | float)
        and base < 0
        and isinstance(exponent, float)
        and not exponent.is_integer()
    ):
        raise ToolError("a negative number to a fractional power is not a real number")


def _checked(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INTEGER_BITS:
        raise ToolError("the result is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is too large")
    return value


def format_number(value: Number) -> str:
    """Integers exactly; floats to 15 significant digits (0.1 + 0.2 gives 0.3)."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.15g}"
