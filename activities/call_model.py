"""The `call_model` activity: one model turn, outside the orchestration's replay.

The orchestration must stay deterministic, so every model call happens here. The trigger
function is a thin adapter between Durable Functions' JSON payloads and the plain
`call_model(request, client)`, which holds the logic and takes its dependencies explicitly
so it can be tested with any `ModelClient`. Failures propagate as `DurableAgentError`
subclasses; the orchestration records them on the turn. Retrying transient model failures
already happened inside the client, bounded by the retry settings.
"""

import logging
from typing import Any

import azure.durable_functions as df

from agent.model import ModelClient, ModelReply, ModelRequest
from agent.openai_model import get_model_client
from agent.settings import get_settings
from agent.telemetry import configure_telemetry, model_call_span

ACTIVITY_NAME = "call_model"

bp = df.Blueprint()
log = logging.getLogger(__name__)


def call_model(request: ModelRequest, client: ModelClient) -> ModelReply:
    """Ask `client` for the reply to `request`'s messages, inside a model-call span."""
    requested = str(getattr(client, "model", "") or "model")
    with model_call_span(request.thread_id, request.turn, requested) as span:
        reply = client.complete(request.messages)
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
    configure_telemetry(get_settings())
    parsed = ModelRequest.from_dict(request)
    client = get_model_client()  # raises ModelNotConfiguredError when no model is configured
    result: dict[str, Any] = call_model(parsed, client).to_dict()
    return result
