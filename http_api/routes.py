"""HTTP triggers of the API. Each handler parses and validates its request, calls
ThreadService, and shapes the response; errors become problem details (problems.py).

Responses never carry Durable Functions management URLs or keys.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from agent.errors import InvalidInputError, PayloadTooLargeError, UnauthorizedError
from agent.settings import get_settings
from agent.thread import MAX_METADATA_BYTES, UserMessage, check_content, check_id
from http_api.problems import handle_errors, json_response
from http_api.threads import ThreadService, utc_now

# Room for 32 KiB of content even when every character is JSON-escaped (\uXXXX).
MAX_BODY_BYTES = 256 * 1024
MAX_WAIT_SECONDS = 120

bp = df.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)


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


def _body(req: func.HttpRequest, *, required: bool) -> dict[str, Any]:
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(
            f"The request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES} bytes."
        )
    if not raw.strip():
        if required:
            raise InvalidInputError('The request needs a JSON body, e.g. {"content": "Hello"}.')
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"The request body is not valid JSON: {error}.") from None
    if not isinstance(data, dict):
        raise InvalidInputError("The request body must be a JSON object.")
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
    """The thread service for this caller: scoped to the signed-in principal when App Service
    Authentication fronts the app (only then is its header trustworthy)."""
    if not get_settings().trust_client_principal_header:
        return ThreadService(client)
    principal = req.headers.get(PRINCIPAL_HEADER)
    if not principal:
        raise UnauthorizedError("Sign in first: this app serves threads only to authenticated callers.")
    return ThreadService(client, principal)


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
    summary = await _service(req, client).create(thread_id, metadata, get_settings())
    links = _links(thread_id)
    return json_response({**summary.to_dict(), **links}, 201, headers={"Location": links["status_url"]})


@endpoint("threads", "GET")
async def list_threads(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    limit = _query_int(req, "limit", 50, 1, 200)
    threads, token = await _service(req, client).list(limit, req.params.get("continuation_token"))
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
    service = _service(req, client)
    await service.post_message(thread_id, UserMessage(id=message_id, content=content, sent_at=utc_now()))
    reply_url = f"/api/threads/{thread_id}/messages/{message_id}"
    accepted = {"thread_id": thread_id, "message_id": message_id, "reply_url": reply_url}
    if wait > 0:
        found = await service.wait_for_reply(thread_id, message_id, wait)
        if found["status"] in ("answered", "failed"):
            return json_response({**accepted, "status": found["status"], "reply": found["reply"]}, 200)
    return json_response({**accepted, "status": "queued"}, 202, headers={"Location": reply_url})


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


@endpoint("health", "GET", client=False, auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    settings = get_settings()
    return json_response({"status": "ok", "model_configured": settings.model is not None})
