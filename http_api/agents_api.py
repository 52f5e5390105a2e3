"""The agents' own routes: `GET /api/agents` and the Microsoft Agent Framework's run contract.

`POST /api/agents/{name}/run` is the route users of the Agent Framework's durable agents
call: a plain-text or JSON (`{"message", "thread_id"?, "wait_for_response"?}`) body, the
thread id also accepted as `?thread_id=`, the thread id returned in `x-ms-thread-id`, and a
reply of `{"status": "success", "response", "message_count", "thread_id"}` (or the reply
text itself for a plain-text request). A thread id that does not exist yet starts a new
thread for that agent. The threads are ordinary threads: every other route works on them.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from agent.errors import ConflictError, InvalidInputError, ModelCallError, NotFoundError
from agent.settings import get_settings
from agent.thread import UserMessage, check_content, check_id
from http_api.problems import json_response
from http_api.routes import MAX_BODY_BYTES, _service, agent_for, check_text, endpoint, json_depth
from http_api.shapes import utc_now

#: how long a run waits for its reply by default (the Agent Framework polls 30 x 1 s)
RUN_WAIT_SECONDS = 60
WAIT_HEADER = "x-ms-wait-for-response"
THREAD_HEADER = "x-ms-thread-id"


@endpoint("agents", "GET", client=False)
async def list_agents(req: func.HttpRequest) -> func.HttpResponse:
    from agents import list_agents as agents
    from tools.registry import describe, get_tool

    listed = []
    for agent in agents():
        specs = [get_tool(name) for name in agent.tools]
        listed.append(
            {
                "name": agent.name,
                "description": agent.description,
                "tools": [describe(spec) for spec in specs if spec is not None],
            }
        )
    return json_response({"agents": listed})


def _run_request(req: func.HttpRequest) -> tuple[str, str | None, bool, bool]:
    """(message, thread id, wait, plain text) from a run request of either shape."""
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidInputError(f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    content_type = (req.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    wait = (req.headers.get(WAIT_HEADER) or "true").strip().lower() != "false"
    thread_id = req.params.get("thread_id") or None
    is_json = content_type == "application/json" or content_type.endswith("+json")
    if not is_json:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError("The message must be UTF-8 text.") from None
        return text, thread_id, wait, True
    if json_depth(raw) > 32:
        raise InvalidInputError("The request body nests JSON too deeply.")
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as error:
        raise InvalidInputError(f"The request body is not valid JSON: {error}.") from None
    if not isinstance(body, dict):
        raise InvalidInputError('The request body must be a JSON object: {"message": "..."}.')
    check_text(body)
    message = body.get("message")
    if not isinstance(message, str):
        raise InvalidInputError('The body needs "message": the text to send to the agent.')
    if body.get("thread_id") is not None:
        if not isinstance(body["thread_id"], str):
            raise InvalidInputError("'thread_id' must be a string.")
        thread_id = body["thread_id"]
    if body.get("wait_for_response") is False:
        wait = False
    return message, thread_id, wait, False


@endpoint("agents/{name}/run", "POST")
async def run_agent(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    text, thread_id, wait, plain = _run_request(req)
    content = check_content(text.strip() if plain else text)
    settings = get_settings()
    name = req.route_params.get("name") or ""
    try:
        agent, system_prompt = agent_for(name, settings)
    except InvalidInputError as unknown:
        raise NotFoundError(unknown.message) from None
    service = _service(req, client)
    thread_id = check_id(thread_id, "'thread_id'") if thread_id else uuid.uuid4().hex
    try:
        await service.get(thread_id)
    except NotFoundError:
        with contextlib.suppress(ConflictError):  # created meanwhile by a concurrent run with the same id
            await service.create(thread_id, {}, settings, agent, system_prompt)
    message_id = uuid.uuid4().hex
    await service.post_message(thread_id, UserMessage(id=message_id, content=content, sent_at=utc_now()))
    headers = {THREAD_HEADER: thread_id}
    if not wait:
        body: dict[str, Any] = {"status": "accepted", "thread_id": thread_id, "correlation_id": message_id}
        return json_response(body, 202, headers=headers)
    found = await service.wait_for_reply(thread_id, message_id, RUN_WAIT_SECONDS)
    if found["status"] not in ("answered", "failed"):
        body = {"status": "pending", "thread_id": thread_id, "correlation_id": message_id}
        return json_response(body, 202, headers=headers)
    reply: dict[str, Any] = found["reply"] or {}
    if "error" in reply:
        error = reply["error"]
        raise ModelCallError(f"The agent could not answer: {error.get('message')} ({error.get('code')})")
    count = (await service.get(thread_id)).message_count
    if plain:
        return func.HttpResponse(
            str(reply.get("content", "")), status_code=200, mimetype="text/plain", headers=headers
        )
    body = {
        "status": "success",
        "response": reply.get("content", ""),
        "message_count": count,
        "thread_id": thread_id,
    }
    return json_response(body, 200, headers=headers)
