"""The agent catalog: the declared agents, lookups, and what GET /api/agents shows of them."""

from __future__ import annotations

import pytest

import agents
import tools
from agent.errors import InvalidInputError
from agent.model import DEFAULT_AGENT_NAME
from agents import DEFAULT_AGENT, Agent, AgentCatalog, check_tools, describe_agents, get_agent, list_agents


def test_the_default_agent() -> None:
    assert DEFAULT_AGENT == DEFAULT_AGENT_NAME == "assistant"
    assistant = get_agent("assistant")
    assert assistant.instructions == "You are a helpful assistant."
    assert assistant.tools == ("current_time", "calculate", "save_note")
    assert (assistant.model, assistant.temperature, assistant.max_output_tokens) == (None, None, None)


def test_the_calculator_agent() -> None:
    calculator = get_agent("calculator")
    assert calculator.tools == ("calculate",)
    assert calculator.temperature == 0.0


def test_list_agents_puts_the_default_first() -> None:
    listed = list_agents()
    assert listed[0].name == DEFAULT_AGENT
    assert {a.name for a in listed} == {"assistant", "calculator"}
    assert len({a.name for a in listed}) == len(listed)


def test_unknown_agent_names_the_known_ones() -> None:
    with pytest.raises(InvalidInputError, match=r"unknown agent 'nobody'; known: assistant, calculator"):
        get_agent("nobody")


def test_every_agent_uses_registered_tools_only() -> None:
    for agent in list_agents():
        assert all(name in tools.REGISTRY for name in agent.tools), agent.name
    bad = AgentCatalog([Agent("a", "d", "i", tools=("calculate", "teleport"))], "a")
    with pytest.raises(tools.ToolDefinitionError, match=r"agent 'a' names unknown tools \['teleport'\]"):
        check_tools(bad, tools.REGISTRY)


def test_catalog_rules() -> None:
    one = Agent("one", "d", "i")
    two = Agent("two", "d", "i")
    assert [a.name for a in AgentCatalog([one, two], "two").list()] == ["two", "one"]
    with pytest.raises(ValueError, match="two agents are named 'one'"):
        AgentCatalog([one, one], "one")
    with pytest.raises(ValueError, match="default agent 'three'"):
        AgentCatalog([one], "three")


def test_describe_agents_includes_tool_schemas_and_approval() -> None:
    described = describe_agents()
    assert [d["name"] for d in described] == [a.name for a in list_agents()]
    assistant = described[0]
    assert set(assistant) == {
        "name",
        "description",
        "instructions",
        "model",
        "temperature",
        "max_output_tokens",
        "tools",
    }
    by_name = {t["name"]: t for t in assistant["tools"]}
    assert list(by_name) == ["current_time", "calculate", "save_note"]
    assert by_name["save_note"]["needs_approval"] is True
    assert by_name["calculate"]["needs_approval"] is False
    assert by_name["calculate"]["parameters"]["required"] == ["expression"]
    assert described[1]["temperature"] == 0.0


def test_the_catalog_is_the_declared_list() -> None:
    assert [a.name for a in agents.AGENTS] == [a.name for a in agents.CATALOG.list()]
