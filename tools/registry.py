"""The tool registry: plain typed Python functions the model may call, described from their code.

A model sees each tool as a name, a description and a JSON schema of its arguments. Written
by hand, those drift from the function they describe; here `@tool` derives them from the
function itself (the signature gives the schema, the docstring the descriptions), and the
same schema checks the model's arguments before the function runs (`check_arguments`).
Adding a tool is one decorated function:

    @tool
    def add(a: int, b: int = 1) -> str:
        '''Add two integers.

        Args:
            a: the first number.
            b: the second number.
        '''
        return str(a + b)

Supported annotations: str, int, float, bool, list[X], Literal[...] (one JSON type), and
`X | None`; a parameter with a default is not required. A parameter annotated
`ToolContext` is not shown to the model: it receives the thread id, the call id and the
durable client when the tool runs. Tools may be `async`.

The registry holds only descriptions and functions; running a call (parsing, checking,
error results, size caps) is `tools.runner`, and who may call which tool is `agents`.
"""

from __future__ import annotations

import inspect
import json
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, overload

from durabletask.client import AsyncTaskHubGrpcClient

JsonSchema = dict[str, Any]
ToolFunction = Callable[..., Any]

#: what OpenAI-compatible endpoints accept as a function name
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_LINE = re.compile(r"^(?P<name>\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(?P<text>.*)$")
_JSON_TYPES: dict[type, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}


class ToolDefinitionError(TypeError):
    """A function cannot be described as a tool (raised when it is registered, at import)."""


class ToolError(Exception):
    """Raised by a tool for a failure the model should read as is (e.g. "division by zero")."""


class ArgumentError(ValueError):
    """The model's arguments do not match a tool's schema; the message says how."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ToolContext:
    """What a tool that asks for it (a parameter annotated `ToolContext`) gets when it runs."""

    thread_id: str
    call_id: str
    #: the activity's durable client (None where there is none, e.g. some tests)
    client: AsyncTaskHubGrpcClient | None = None
    #: the activity's clock; tools read time here, never in the orchestration
    now: Callable[[], datetime] = field(default=_utc_now)


@dataclass(frozen=True)
class ToolSpec:
    """One registered tool: what the model is shown, and the function that runs it."""

    name: str
    description: str
    #: JSON schema of the arguments object
    parameters: JsonSchema
    needs_approval: bool
    function: ToolFunction
    #: the parameter that receives the ToolContext, if the function declares one
    context_parameter: str | None = None
    #: False for tools that validate their own arguments (Agent Framework tools)
    check_schema: bool = True

    def schema(self) -> dict[str, Any]:
        """The tool in the Chat Completions `tools` format."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def describe(spec: ToolSpec) -> dict[str, Any]:
    """The tool as `GET /api/agents` lists it."""
    return {
        "name": spec.name,
        "description": spec.description,
        "parameters": spec.parameters,
        "needs_approval": spec.needs_approval,
    }


class ToolRegistry:
    """Tools by name. The app uses the one `REGISTRY`; tests build their own."""

    def __init__(self) -> None:
        self._tools: dict[str, ToolSpec] = {}

    def add(self, spec: ToolSpec) -> ToolSpec:
        if not NAME_PATTERN.fullmatch(spec.name):
            raise ToolDefinitionError(f"tool name {spec.name!r} must match {NAME_PATTERN.pattern}")
        if spec.name in self._tools:
            raise ToolDefinitionError(f"a tool named {spec.name!r} is already registered")
        self._tools[spec.name] = spec
        return spec

    @overload
    def tool(self, function: ToolFunction) -> ToolFunction: ...

    @overload
    def tool(
        self, *, needs_approval: bool = False, name: str | None = None
    ) -> Callable[[ToolFunction], ToolFunction]: ...

    def tool(
        self,
        function: ToolFunction | None = None,
        *,
        needs_approval: bool = False,
        name: str | None = None,
    ) -> ToolFunction | Callable[[ToolFunction], ToolFunction]:
        """Register a function (`@registry.tool` or `@registry.tool(needs_approval=True)`);
        the function itself is returned unchanged, so it stays callable and testable."""

        def register(fn: ToolFunction) -> ToolFunction:
            self.add(spec_from_function(fn, name=name, needs_approval=needs_approval))
            return fn

        return register(function) if function is not None else register

    def add_function_tool(self, function_tool: Any, *, needs_approval: bool | None = None) -> ToolSpec:
        """Register a Microsoft Agent Framework tool (`agent_framework.FunctionTool`, what its
        `@tool` makes). Duck-typed, so agent-framework-core stays an optional install: the
        object needs `name`, `description`, `parameters()` and `async invoke(arguments=...)`.
        `needs_approval` defaults to its `approval_mode == "always_require"`."""
        name, parameters = getattr(function_tool, "name", None), getattr(function_tool, "parameters", None)
        invoke = getattr(function_tool, "invoke", None)
        if not isinstance(name, str) or not callable(parameters) or not callable(invoke):
            raise ToolDefinitionError(f"{function_tool!r} is not an Agent Framework function tool")
        schema = parameters()
        if not isinstance(schema, Mapping):
            raise ToolDefinitionError(f"tool {name!r}: parameters() did not return a JSON schema object")
        if needs_approval is None:
            needs_approval = getattr(function_tool, "approval_mode", None) == "always_require"

        async def run(**arguments: Any) -> Any:
            try:
                return await invoke(arguments=arguments, skip_parsing=True)
            except Exception as failure:
                if "ArgumentValidation" in type(failure).__name__:  # its pydantic check refused them
                    raise ToolError(str(failure)) from None
                raise

        return self.add(
            ToolSpec(
                name=name,
                description=str(getattr(function_tool, "description", "") or ""),
                parameters={"type": "object", "properties": {}, **dict(schema)},
                needs_approval=needs_approval,
                function=run,
                check_schema=False,
            )
        )

    def get(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """The named tools in the Chat Completions `tools` format; unknown names are an error."""
        specs = []
        for name in names:
            spec = self._tools.get(name)
            if spec is None:
                raise ToolDefinitionError(f"unknown tool {name!r}; registered: {', '.join(self._tools)}")
            specs.append(spec.schema())
        return specs

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)


#: the app's tools; `tools.builtin` fills it when `tools` is imported
REGISTRY = ToolRegistry()
tool = REGISTRY.tool


def get_tool(name: str) -> ToolSpec | None:
    return REGISTRY.get(name)


def tool_schemas(names: Iterable[str]) -> list[dict[str, Any]]:
    return REGISTRY.schemas(names)


# -- describing a function ---------------------------------------------------------------------


def spec_from_function(
    function: ToolFunction, *, name: str | None = None, needs_approval: bool = False
) -> ToolSpec:
    """Describe `function` as a tool: the schema from its signature, texts from its docstring."""
    tool_name = name or function.__name__
    where = f"tool {tool_name!r}"
    description, arg_docs = parse_docstring(inspect.getdoc(function) or "")
    if not description:
        raise ToolDefinitionError(
            f"{where} needs a docstring: its first paragraph tells the model what it does"
        )
    try:
        hints = get_type_hints(function)
    except (NameError, TypeError) as unresolved:
        raise ToolDefinitionError(f"{where}: cannot resolve its annotations ({unresolved})") from None
    properties: dict[str, JsonSchema] = {}
    required: list[str] = []
    context_parameter: str | None = None
    for parameter in inspect.signature(function).parameters.values():
        pname = parameter.name
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            raise ToolDefinitionError(f"{where}: parameter {pname!r} must be a plain named parameter")
        if pname not in hints:
            raise ToolDefinitionError(f"{where}: parameter {pname!r} needs a type annotation")
        if hints[pname] is ToolContext:
            context_parameter = pname
            continue
        schema = schema_for(hints[pname], f"{where} parameter {pname!r}")
        if parameter.default is parameter.empty:
            required.append(pname)
        elif parameter.default is not None:
            if not _is_json(parameter.default):
                raise ToolDefinitionError(f"{where}: the default of {pname!r} is not a JSON value")
            schema["default"] = parameter.default
        if pname in arg_docs:
            schema = {"description": arg_docs[pname], **schema}
        properties[pname] = schema
    unknown = sorted(set(arg_docs) - set(properties))
    if unknown:
        raise ToolDefinitionError(f"{where}: the docstring describes unknown parameters {unknown}")
    parameters: JsonSchema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        parameters["required"] = required
    return ToolSpec(
        name=tool_name,
        description=description,
        parameters=parameters,
        needs_approval=needs_approval,
        function=function,
        context_parameter=context_parameter,
    )


def schema_for(annotation: Any, where: str = "annotation") -> JsonSchema:
    """The JSON schema of one supported annotation (see the module docstring)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    if origin is list or annotation is list:
        if len(args) != 1:
            raise ToolDefinitionError(f"{where}: a list needs its item type, e.g. list[str]")
        return {"type": "array", "items": schema_for(args[0], where)}
    if origin is Literal:
        kinds = {_JSON_TYPES.get(type(value)) for value in args}
        if len(kinds) != 1 or None in kinds:
            raise ToolDefinitionError(f"{where}: Literal values must all be str, all int or all bool")
        return {"type": kinds.pop(), "enum": list(args)}
    if origin in (Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        if len(present) != 1 or len(present) == len(args):
            raise ToolDefinitionError(f"{where}: only `X | None` unions are supported, got {annotation}")
        inner = schema_for(present[0], where)
        nullable = {**inner, "type": [inner["type"], "null"]}
        if "enum" in inner:
            nullable["enum"] = [*inner["enum"], None]
        return nullable
    raise ToolDefinitionError(
        f"{where}: unsupported annotation {annotation!r}; use str, int, float, bool, list[...], "
        "Literal[...] or X | None"
    )


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a Google-style docstring.

    The description is the first paragraph, joined into one line. Parameter descriptions
    come from an `Args:` section (`name: text` or `name (type): text`, continuation lines
    indented further)."""
    lines = inspect.cleandoc(doc).splitlines()
    first: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line.strip()):
            break
        first.append(line.strip())
    args: dict[str, str] = {}
    in_args, current, indent = False, "", 0
    for line in lines:
        stripped = line.strip()
        section = _SECTION.match(stripped) if line == line.lstrip() else None
        if section:
            in_args, current = section.group(1) in ("Args", "Arguments", "Parameters"), ""
            continue
        if not in_args or not stripped:
            continue
        if line == line.lstrip():  # back at the left margin: the section ended
            in_args = False
            continue
        depth = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(stripped)
        if match and (not current or depth <= indent):
            current, indent = match.group("name").lstrip("*"), depth
            args[current] = match.group("text").strip()
        elif current:
            args[current] = f"{args[current]} {stripped}".strip()
    return " ".join(first), args


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


# -- checking arguments against a generated schema ---------------------------------------------


def check_arguments(schema: Mapping[str, Any], arguments: Any) -> dict[str, Any]:
    """The arguments, checked against an object schema made by `spec_from_function` (and
    integral floats turned into ints where an integer is asked for). Raises ArgumentError
    with a message the model can act on."""
    if not isinstance(arguments, dict):
        raise ArgumentError(f"arguments must be a JSON object, got {_json_kind(arguments)}")
    properties: Mapping[str, Any] = schema.get("properties") or {}
    missing = [name for name in schema.get("required") or () if name not in arguments]
    if missing:
        raise ArgumentError(f"missing required argument {', '.join(repr(m) for m in missing)}")
    if schema.get("additionalProperties") is False:
        extra = [name for name in arguments if name not in properties]
        if extra:
            known = ", ".join(properties) or "none"
            raise ArgumentError(f"got an unexpected argument {extra[0]!r} (arguments: {known})")
    return {
        name: _check_value(properties[name], value, f"argument {name!r}") if name in properties else value
        for name, value in arguments.items()
    }


def _check_value(schema: Mapping[str, Any], value: Any, where: str) -> Any:
    expected = schema.get("type")
    allowed = expected if isinstance(expected, list) else [expected] if expected else []
    checked: Any = value
    if allowed:
        matched = False
        for kind in allowed:
            ok, converted = _as_kind(kind, value)
            if ok:
                matched, checked = True, converted
                break
        if not matched:
            wanted = " or ".join(_article(k) for k in allowed)
            raise ArgumentError(f"{where} must be {wanted}, got {_json_kind(value)}")
    enum = schema.get("enum")
    if enum is not None and checked not in enum:
        raise ArgumentError(
            f"{where} must be one of {', '.join(json.dumps(e) for e in enum)}, got {json.dumps(value)}"
        )
    if isinstance(checked, list) and "items" in schema:
        checked = [_check_value(schema["items"], item, f"{where}[{i}]") for i, item in enumerate(checked)]
    return checked


def _as_kind(kind: str, value: Any) -> tuple[bool, Any]:
    match kind:
        case "string":
            return isinstance(value, str), value
        case "boolean":
            return isinstance(value, bool), value
        case "integer":
            if isinstance(value, float) and value.is_integer():
                return True, int(value)
            return isinstance(value, int) and not isinstance(value, bool), value
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool), value
        case "array":
            return isinstance(value, list), value
        case "object":
            return isinstance(value, dict), value
        case "null":
            return value is None, value
    return True, value


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _article(kind: str) -> str:
    return {"integer": "an integer", "array": "an array", "object": "an object", "null": "null"}.get(
        kind, f"a {kind}"
    )
