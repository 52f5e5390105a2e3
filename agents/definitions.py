"""The app's agents, declared in code: this file is the one place to add or change one.

An agent is what a thread talks to: its own instructions, the tools the model may call,
and optional model settings. A thread names its agent when it starts (default
`assistant`); the `call_model` activity sends that agent's tools and overrides, and the
`run_tool` activity refuses tools the agent does not have.
"""

from __future__ import annotations

from agents.agent import Agent

DEFAULT_AGENT = "assistant"

AGENTS: tuple[Agent, ...] = (
    Agent(
        name=DEFAULT_AGENT,
        description="A general helpful assistant that can tell the time, calculate and save notes.",
        instructions="You are a helpful assistant.",
        tools=("current_time", "calculate", "save_note"),
    ),
    Agent(
        name="calculator",
        description="A terse arithmetic helper: answers with the result of a calculation.",
        instructions=(
            "You are a calculator. Use the calculate tool for every computation and answer with "
            "the result only, no explanation."
        ),
        tools=("calculate",),
        temperature=0.0,
    ),
)
