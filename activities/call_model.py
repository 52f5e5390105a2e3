"""The `call_model` activity: one model turn, outside the orchestration's replay.

The orchestration must stay deterministic, so every model call happens here. The trigger
function is a thin adapter between Durable Functions' JSON payloads and the plain
`call_model(request, client)`, which holds the logic and takes its dependencies explicitly
so it can be tested with any `ModelClient`. Failures propagate as `DurableAgentError`
subclasses; the orchestration records them on the turn. Retrying transient model failures
already happened inside the client, bounded by the retry settings.
"""

import logging
from dataclasses import replace
from typing import Any

import azure.durable_functions as df

from agent.contract import CALL_MODEL_ACTIVITY
from agent.errors import DurableAgentError, ModelCallError, public_message
from agent.model import ModelClient, ModelReply, ModelRequest
from agent.openai_model import get_model_client
from agent.settings import get_settings
from agent.telemetry import configure_telemetry, model_call_span
from agent.thread import encoded_size

ACTIVITY_NAME = CALL_MODEL_ACTIVITY
#: room in a stored reply entry for everything but its content
REPLY_ENTRY_OVERHEAD = 1024

bp = df.Blueprint()
log = logging.getLogger(__name__)


def fit_reply(reply: ModelReply, max_reply_bytes: int) -> ModelReply:
    """The reply, cut to what the thread can store (encoded), marked `truncated` if cut."""
    budget = max(max_reply_bytes - REPLY_ENTRY_OVERHEAD, 1)
    if encoded_size(reply.content) <= budget:
        return reply
    low, high = 0, len(reply.content)
    while low < high:  # the longest prefix whose encoding fits
        middle = (low + high + 1) // 2
        if encoded_size(reply.content[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return replace(reply, content=reply.content[:low], finish_reason="length", truncated=True)


def call_model(request: ModelRequest, client: ModelClient) -> ModelReply:
    """Ask `client` for the reply to `request`'s messages, inside a model-call span."""
    requested = str(getattr(client, "model", "") or "model")
    with model_call_span(request.thread_id, request.turn, requested) as span:
        reply = fit_reply(client.complete(request.messages), request.max_reply_bytes)
        span.record_reply(reply)
    log.info(
        "thread %s turn %d: model %s answered in %d ms (%d tokens, finish_reason %s)",
        request.thread_id,
        request.turn,
        reply.model,
        reply.latency_ms,
        reply.usage.total_tokens,
        reply.finish_reason,
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
