"""Tools the model may call during a turn: the registry (`tools.registry`), the built-in
tools (`tools.builtin`) and how one call runs (`tools.runner`).

Importing this package registers the built-in tools in `REGISTRY`; it builds no clients.
"""

from tools import builtin as builtin
from tools.registry import (
    REGISTRY,
    ToolContext,
    ToolDefinitionError,
    ToolError,
    ToolRegistry,
    ToolSpec,
    describe,
    get_tool,
    tool,
    tool_schemas,
)

__all__ = [
    "REGISTRY",
    "ToolContext",
    "ToolDefinitionError",
    "ToolError",
    "ToolRegistry",
    "ToolSpec",
    "builtin",
    "describe",
    "get_tool",
    "tool",
    "tool_schemas",
]
