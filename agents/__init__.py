"""Agents a thread can talk to. Declared in `agents/definitions.py`; looked up here.

get_agent("assistant") -> Agent       # InvalidInputError for an unknown name
list_agents() -> list[Agent]          # the default first
describe_agents() -> list[dict]       # what GET /api/agents returns, tools described
"""

from __future__ import annotations

from typing import Any

import tools as _tools
from agents.agent import Agent, AgentCatalog, describe_agent
from agents.definitions import AGENTS, DEFAULT_AGENT

CATALOG = AgentCatalog(AGENTS, DEFAULT_AGENT)


def check_tools(catalog: AgentCatalog, registry: _tools.ToolRegistry) -> None:
    """Fail (at import, so at indexing) when an agent names a tool that is not registered."""
    for agent in catalog.list():
        missing = [name for name in agent.tools if name not in registry]
        if missing:
            raise _tools.ToolDefinitionError(f"agent {agent.name!r} names unknown tools {missing}")


check_tools(CATALOG, _tools.REGISTRY)


def get_agent(name: str) -> Agent:
    return CATALOG.get(name)


def list_agents() -> list[Agent]:
    return CATALOG.list()


def describe_agents() -> list[dict[str, Any]]:
    described = {spec.name: _tools.describe(spec) for spec in _tools.REGISTRY}
    return [describe_agent(agent, described) for agent in list_agents()]


__all__ = [
    "AGENTS",
    "CATALOG",
    "DEFAULT_AGENT",
    "Agent",
    "AgentCatalog",
    "check_tools",
    "describe_agent",
    "describe_agents",
    "get_agent",
    "list_agents",
]
