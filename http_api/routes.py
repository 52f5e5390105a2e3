"""HTTP triggers of the API. Each handler parses and validates its request, calls
ThreadService, and shapes the response; errors become problem details (problems.py).

Responses never carry Durable Functions management URLs or keys.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.functions.warmup import WarmUpContext

from agent.errors import InvalidInputError, PayloadTooLargeError, UnauthorizedError, UnsupportedMediaTypeError
from agent.limits import caller_key
from agent.payload import encoded_size
from agent.settings import MAX_SYSTEM_PROMPT_BYTES, REQUEST_OVERHEAD_BYTES, describe_model, get_settings
from agent.thread import MAX_METADATA_BYTES, UserMessage, check_content, check_id
from http_api.problems import handle_errors, json_response
from http_api.shapes import utc_now
from http_api.threads import ThreadService

# Room for 32 KiB of content even when every character is JSON-escaped (\uXXXX).
MAX_BODY_BYTES = 256 * 1024
MAX_WAIT_SECONDS = 120
MAX_JSON_DEPTH = 32
CALL_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")
JSON_TYPES = ("application/json",)

bp = df.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)
logger = logging.getLogger(__name__)


Handler = Callable[..., Awaitable[func.HttpResponse]]


def endpoint(
    route: str, method: str, *, client: bool = True, auth_level: func.AuthLevel | None = None
) -> Callable[[Handler], Any]:
    """Register a handler: HTTP trigger, durable client binding, problem details, tracing."""

    def register(handler: Handler) -> Any:
        wrapped: Any = handle_errors(handler, route)
        if client:
            wrapped = bp.durable_client_input(client_name="client")(wrapped)
        return bp.route(route=route, methods=[method], auth_level=auth_level)(wrapped)

    return register


def json_depth(raw: bytes) -> int:
    """The deepest nesting of [] and {} in a JSON text (strings skipped), without parsing."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def check_text(value: Any, where: str = "the request body") -> None:
    """Reject strings that cannot be encoded as UTF-8 anywhere in a parsed JSON value."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"{where} holds text that is not valid Unicode (a lone surrogate such as \\ud800); "
            "send well-formed UTF-8."
        ) from None


def _body(req: func.HttpRequest, *, required: bool) -> dict[str, Any]:
    content_type = (req.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type and content_type not in JSON_TYPES and not content_type.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"The request body must be JSON (Content-Type: application/json), not {content_type[:80]}."
        )
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(
            f"The request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES} bytes."
        )
    if not raw.strip():
        if required:
            raise InvalidInputError('The request needs a JSON body, e.g. {"content": "Hello"}.')
        return {}
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise InvalidInputError(f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels.")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"The request body is not valid JSON: {error}.") from None
    if not isinstance(data, dict):
        raise InvalidInputError("The request body must be a JSON object.")
    check_text(data)
    return data


def _query_int(req: func.HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = req.params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInputError(
            f"Query parameter '{name}' must be an integer from {low} to {high}."
        ) from None
    if not low <= value <= high:
        raise InvalidInputError(f"Query parameter '{name}' must be from {low} to {high}, got {value}.")
    return value


def _thread_id(req: func.HttpRequest) -> str:
    return check_id(req.route_params.get("thread_id"), "The thread id")


PRINCIPAL_HEADER = "x-ms-client-principal-id"


def _service(req: func.HttpRequest, client: df.DurableFunctionsClient) -> ThreadService:
    """The thread service for this caller, scoped to its principal when callers sign in."""
    settings = get_settings()
    headers = dict(req.headers)
    principal = caller_principal(headers, settings)
    return ThreadService(client, principal, settings, caller_key(principal, headers))


def caller_principal(headers: dict[str, str], settings: Any) -> str | None:
    mode = settings.auth.mode
    if mode == "none":
        return None
    if mode == "entra":
        from agent.auth import principal_for  # validated Bearer token (agent/auth.py)

        return principal_for(headers, settings)
    principal = next((v for k, v in headers.items() if k.lower() == PRINCIPAL_HEADER), None)
    if not principal:
        raise UnauthorizedError("Sign in first: this app serves threads only to authenticated callers.")
    return principal


def _links(thread_id: str) -> dict[str, str]:
    return {"status_url": f"/api/threads/{thread_id}", "messages_url": f"/api/threads/{thread_id}/messages"}


@endpoint("threads", "POST")
async def create_thread(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    body = _body(req, required=False)
    thread_id = (
        check_id(body["thread_id"], "'thread_id'") if body.get("thread_id") is not None else uuid.uuid4().hex
    )
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInputError("'metadata' must be a JSON object.")
    if len(json.dumps(metadata).encode()) > MAX_METADATA_BYTES:
        raise PayloadTooLargeError(f"'metadata' is larger than {MAX_METADATA_BYTES} bytes.")
    check_text(metadata, "'metadata'")
    agent_name = body.get("agent")
    if agent_name is not None and not isinstance(agent_name, str):
        raise InvalidInputError("'agent' must be the name of an agent (see GET /api/agents).")
    settings = get_settings()
    agent, system_prompt = agent_for(agent_name, settings)
    summary = await _service(req, client).create(thread_id, metadata, settings, agent, system_prompt)
    links = _links(thread_id)
    return json_response({**summary.to_dict(), **links}, 201, headers={"Location": links["status_url"]})


def agent_for(name: str | None, settings: Any) -> tuple[str, str]:
    """(agent name, system prompt) for a new thread; InvalidInputError for an unknown agent.
    The default agent's prompt is SYSTEM_PROMPT (whose default is its instructions)."""
    from agents import DEFAULT_AGENT, get_agent

    agent = get_agent(name or DEFAULT_AGENT)
    prompt = settings.system_prompt if agent.name == DEFAULT_AGENT else agent.instructions
    return agent.name, prompt


@endpoint("threads", "GET")
async def list_threads(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    limit = _query_int(req, "limit", 50, 1, 200)
    threads, token = await _service(req, client).list_threads(limit, req.params.get("continuation_token"))
    return json_response({"threads": [t.to_dict() for t in threads], "continuation_token": token})


@endpoint("threads/{thread_id}", "GET")
async def get_thread(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    thread_id = _thread_id(req)
    summary = await _service(req, client).get(thread_id)
    return json_response({**summary.to_dict(), **_links(thread_id)})


@endpoint("threads/{thread_id}", "DELETE")
async def delete_thread(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    await _service(req, client).delete(_thread_id(req))
    return func.HttpResponse(status_code=204)


@endpoint("threads/{thread_id}/messages", "POST")
async def post_message(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    thread_id = _thread_id(req)
    wait = _query_int(req, "wait", 0, 0, MAX_WAIT_SECONDS)
    body = _body(req, required=True)
    if "content" not in body:
        raise InvalidInputError("The body needs 'content': the message text (1 byte to 32 KiB).")
    content = check_content(body["content"])
    raw_id = body.get("message_id")
    message_id = check_id(raw_id, "'message_id'") if raw_id is not None else uuid.uuid4().hex
    settings = get_settings()
    limit = settings.payload_cap_bytes - REQUEST_OVERHEAD_BYTES - MAX_SYSTEM_PROMPT_BYTES
    if encoded_size(content) > limit:
        raise PayloadTooLargeError(
            f"'content' takes {encoded_size(content)} bytes once encoded for storage; the limit is {limit} "
            "(PAYLOAD_CAP_BYTES). Send shorter text, or fewer characters that need escaping."
        )
    service = _service(req, client)
    accepted = await service.post_message(
        thread_id, UserMessage(id=message_id, content=content, sent_at=utc_now())
    )
    reply_url = f"/api/threads/{thread_id}/messages/{message_id}"
    links = {"thread_id": thread_id, "message_id": message_id, "reply_url": reply_url}
    if wait > 0 or accepted.duplicate:
        found = await (
            service.wait_for_reply(thread_id, message_id, wait, accepted.after_seq)
            if wait
            else service.reply(thread_id, message_id, accepted.after_seq)
        )
        if found["status"] in ("answered", "failed"):
            return json_response({**links, "status": found["status"], "reply": found["reply"]}, 200)
    return json_response({**links, "status": "queued"}, 202, headers={"Location": reply_url})


@endpoint("threads/{thread_id}/messages", "GET")
async def list_messages(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    thread_id = _thread_id(req)
    after = _query_int(req, "after", 0, 0, 2**62)
    limit = _query_int(req, "limit", 50, 1, 200)
    page = await _service(req, client).messages(thread_id, after, limit)
    return json_response(
        {"thread_id": thread_id, "messages": page["entries"], "next_after": page["next_after"]}
    )


@endpoint("threads/{thread_id}/messages/{message_id}", "GET")
async def get_message(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    thread_id = _thread_id(req)
    message_id = check_id(req.route_params.get("message_id"), "The message id")
    wait = _query_int(req, "wait", 0, 0, MAX_WAIT_SECONDS)
    service = _service(req, client)
    found = await (
        service.wait_for_reply(thread_id, message_id, wait) if wait else service.reply(thread_id, message_id)
    )
    return json_response(found)


@endpoint("threads/{thread_id}/approvals/{call_id}", "POST")
async def decide_approval(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    thread_id = _thread_id(req)
    call_id = req.route_params.get("call_id") or ""
    if not CALL_ID_PATTERN.fullmatch(call_id):
        raise InvalidInputError("The tool call id must be 1 to 128 letters, digits, '_', '-' or '.'.")
    body = _body(req, required=True)
    approve, reason = body.get("approve"), body.get("reason")
    if not isinstance(approve, bool):
        raise InvalidInputError('The body needs "approve": true or false (and optionally "reason").')
    if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
        raise InvalidInputError("'reason' must be a string of at most 1000 characters.")
    decision = await _service(req, client).decide(thread_id, call_id, approve, reason)
    return json_response({"thread_id": thread_id, "call_id": call_id, "decision": decision}, 202)


@endpoint("threads/{thread_id}/notes", "GET")
async def list_notes(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    thread_id = _thread_id(req)
    notes = await _service(req, client).notes(thread_id)
    return json_response({"thread_id": thread_id, "notes": notes})


@endpoint("health", "GET", client=False, auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    settings = get_settings()
    return json_response({"status": "healthy", "model_configured": settings.model is not None})


@bp.function_name("warmup")
@bp.warm_up_trigger("warmup")
def warmup(warmup: WarmUpContext) -> None:
    """Runs when an instance starts (devhost: before it says ready): load the settings, so a
    bad value stops the host with a message naming the variable, and say which model."""
    settings = get_settings()
    model = settings.model
    if model is None:
        logger.warning(
            "no model is configured: every turn will be recorded as an error until AZURE_OPENAI_ENDPOINT "
            "and AZURE_OPENAI_DEPLOYMENT, or OPENAI_MODEL (with OPENAI_BASE_URL for a local server), are set"
        )
    else:
        logger.info("model: %s", describe_model(model))
