"""What an agent is, and how one is looked up by name.

Kept apart from `agents.definitions` (the data) so the lookup can be tested with any set
of agents and the definitions file stays a plain list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import InvalidInputError


@dataclass(frozen=True)
class Agent:
    """One agent: its instructions, its tools (registry names) and model overrides."""

    name: str
    description: str
    #: the agent's own system prompt (the SYSTEM_PROMPT setting, when set, wins for threads)
    instructions: str
    tools: tuple[str, ...] = ()
    #: model (OpenAI) or deployment (Azure OpenAI) to use instead of the configured one
    model: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None


class AgentCatalog:
    """Agents by name, the default first."""

    def __init__(self, agents: Iterable[Agent], default: str) -> None:
        self._agents: dict[str, Agent] = {}
        for agent in agents:
            if agent.name in self._agents:
                raise ValueError(f"two agents are named {agent.name!r}")
            self._agents[agent.name] = agent
        if default not in self._agents:
            raise ValueError(f"the default agent {default!r} is not defined")
        self.default = default

    def get(self, name: str) -> Agent:
        agent = self._agents.get(name)
        if agent is None:
            raise InvalidInputError(f"unknown agent {name!r}; known: {', '.join(self._agents)}")
        return agent

    def list(self) -> list[Agent]:
        default = self._agents[self.default]
        return [default, *(a for a in self._agents.values() if a is not default)]

    def __contains__(self, name: object) -> bool:
        return name in self._agents


def describe_agent(agent: Agent, tools: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The agent as `GET /api/agents` lists it; `tools` maps tool names to `tools.describe()`."""
    return {
        "name": agent.name,
        "description": agent.description,
        "instructions": agent.instructions,
        "model": agent.model,
        "temperature": agent.temperature,
        "max_output_tokens": agent.max_output_tokens,
        "tools": [dict(tools[t]) for t in agent.tools if t in tools],
    }
