"""The `call_model` activity: one model turn, outside the orchestration's replay.

The orchestration must stay deterministic, so every model call happens here. The request
names the thread's agent; its tools and model overrides are resolved here, and each tool
call in the reply is marked with whether it needs approval. The trigger
function is a thin adapter between Durable Functions' JSON payloads and the plain
`call_model(request, client)`, which holds the logic and takes its dependencies explicitly
so it can be tested with any `ModelClient`. Failures propagate as `DurableAgentError`
subclasses; the orchestration records them on the turn. Retrying transient model failures
already happened inside the client, bounded by the retry settings.
"""

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import azure.durable_functions as df

from agent.contract import CALL_MODEL_ACTIVITY
from agent.errors import DurableAgentError, ModelCallError, public_message
from agent.model import ModelClient, ModelOptions, ModelReply, ModelRequest
from agent.openai_model import get_model_client
from agent.payload import encoded_size
from agent.settings import get_settings
from agent.telemetry import configure_telemetry, model_call_span
from agents import Agent, get_agent
from tools import REGISTRY, ToolRegistry

ACTIVITY_NAME = CALL_MODEL_ACTIVITY
#: room in a stored reply entry for everything but its content
REPLY_ENTRY_OVERHEAD = 1024

bp = df.Blueprint()
log = logging.getLogger(__name__)


def fit_reply(reply: ModelReply, max_reply_bytes: int) -> ModelReply:
    """The reply, cut to what the thread can store (encoded), marked `truncated` if cut.

    Tool calls are never cut (a cut call could not run); they take their room first, and a
    reply whose tool calls alone do not fit is a (non-retryable) model error."""
    budget = max_reply_bytes - REPLY_ENTRY_OVERHEAD
    if reply.tool_calls:
        calls_size = encoded_size([dict(c) for c in reply.tool_calls])
        if calls_size > budget:
            raise ModelCallError(
                f"the model asked for tool calls of {calls_size} bytes, more than a thread stores "
                f"({budget}); ask for less at once.",
                retryable=False,
            )
        budget -= calls_size
    if not reply.content or encoded_size(reply.content) <= budget:
        return reply  # nothing to cut (an empty text is never marked truncated)
    low, high = 0, len(reply.content)
    while low < high:  # the longest prefix whose encoding fits
        middle = (low + high + 1) // 2
        if encoded_size(reply.content[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return replace(reply, content=reply.content[:low], finish_reason="length", truncated=True)


def model_options(agent: Agent, registry: ToolRegistry) -> ModelOptions:
    """What a call for `agent` sends besides the messages: its tools and model overrides."""
    return ModelOptions(
        tools=tuple(registry.schemas(agent.tools)),
        model=agent.model,
        temperature=agent.temperature,
        max_output_tokens=agent.max_output_tokens,
    )


def mark_approvals(reply: ModelReply, registry: ToolRegistry) -> ModelReply:
    """The reply with each tool call's `needs_approval` taken from the registry (unknown
    tools: False; `run_tool` answers them with an error), so the orchestration never reads
    the registry."""
    if not reply.tool_calls:
        return reply
    calls = []
    for call in reply.tool_calls:
        spec = registry.get(str(call.get("name")))
        calls.append({**call, "needs_approval": spec is not None and spec.needs_approval})
    return replace(reply, tool_calls=tuple(calls))


def call_model(
    request: ModelRequest,
    client: ModelClient,
    *,
    registry: ToolRegistry = REGISTRY,
    find_agent: Callable[[str], Agent] = get_agent,
) -> ModelReply:
    """Ask `client` for the reply to `request`'s messages as the request's agent (its tools,
    its overrides), inside a model-call span. An unknown agent is an InvalidInputError."""
    agent = find_agent(request.agent)
    options = model_options(agent, registry)
    requested = agent.model or str(getattr(client, "model", "") or "model")
    with model_call_span(request.thread_id, request.turn, requested) as span:
        answer = mark_approvals(client.complete(request.messages, options), registry)
        reply = fit_reply(answer, request.max_reply_bytes)
        span.record_reply(reply)
    log.info(
        "thread %s turn %d: model %s answered in %d ms (%d tokens, finish_reason %s, %d tool calls)",
        request.thread_id,
        request.turn,
        reply.model,
        reply.latency_ms,
        reply.usage.total_tokens,
        reply.finish_reason,
        len(reply.tool_calls),
    )
    return reply


# The Functions worker indexer accepts only plain classes as binding annotations, hence the
# bare `dict`: the input is ModelRequest.to_dict(), the output ModelReply.to_dict().
@bp.function_name(ACTIVITY_NAME)
@bp.activity_trigger(input_name="request", activity=ACTIVITY_NAME)
def call_model_trigger(request: dict) -> dict:  # type: ignore[type-arg]
    """Trigger adapter: decode the request, call the process-wide model client, encode the reply."""
    try:
        configure_telemetry(get_settings())
        parsed = ModelRequest.from_dict(request)
        client = get_model_client()  # raises ModelNotConfiguredError when no model is configured
        result: dict[str, Any] = call_model(parsed, client).to_dict()
    except DurableAgentError as error:
        # The detail (endpoints, addresses) stays in this log; the thread records a public message.
        log.warning("call_model failed: %s: %s", type(error).__name__, error.message)
        raise _public_copy(error) from None
    return result


def _public_copy(error: DurableAgentError) -> DurableAgentError:
    """The same kind of error (so the thread records the same code), with a public message."""
    kind = type(error) if type(error).__init__ is DurableAgentError.__init__ else ModelCallError
    return kind(public_message(error.message), retryable=error.retryable)
