"""The Durable Functions HTTP management API under /runtime/webhooks/durabletask.

URLs built by `create_check_status_response` / `create_http_management_payload` point
here, so they work locally as they do in Azure: instance status, raise event, terminate,
suspend, resume and purge.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, unquote

from durabletask.client import AsyncTaskHubGrpcClient, OrchestrationState

from devhost.http_types import Response, problem_response

PREFIX = "/runtime/webhooks/durabletask"


def _status(state: OrchestrationState, show_input: bool) -> dict[str, Any]:
    def parse(raw: str | None) -> Any:
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    body: dict[str, Any] = {
        "name": state.name,
        "instanceId": state.instance_id,
        "runtimeStatus": "".join(w.capitalize() for w in state.runtime_status.name.split("_")),
        "customStatus": parse(state.serialized_custom_status),
        "output": parse(state.serialized_output),
        "createdTime": state.created_at.isoformat() + "Z",
        "lastUpdatedTime": state.last_updated_at.isoformat() + "Z",
    }
    if show_input:
        body["input"] = parse(state.serialized_input)
    if state.failure_details is not None:
        body["output"] = state.failure_details.message
    return body


class ManagementApi:
    def __init__(self, client: AsyncTaskHubGrpcClient) -> None:
        self._client = client

    async def handle(self, method: str, path: str, query: str, body: bytes) -> Response:
        parts = [unquote(p) for p in path[len(PREFIX) :].strip("/").split("/") if p]
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        if len(parts) < 2 or parts[0] != "instances":
            return problem_response(
                404, "Unknown management route; see /runtime/webhooks/durabletask/instances/{id}."
            )
        instance_id = parts[1]
        action = parts[2] if len(parts) > 2 else None
        state = await self._client.get_orchestration_state(instance_id, fetch_payloads=True)
        if state is None:
            return problem_response(404, f"Instance '{instance_id}' does not exist.")
        if method == "GET" and action is None:
            show_input = params.get("showInput", "true").lower() != "false"
            body_json = _status(state, show_input)
            if params.get("showHistory", "").lower() == "true":
                history = await self._client.get_orchestration_history(instance_id)
                body_json["historyEvents"] = [type(e).__name__ for e in history]
            code = 200 if state.runtime_status.name in ("COMPLETED", "FAILED", "TERMINATED") else 202
            return Response.json(body_json, code)
        if method == "DELETE" and action is None:
            result = await self._client.purge_orchestration(instance_id)
            return Response.json({"instancesDeleted": result.deleted_instance_count}, 200)
        if method == "POST" and action == "raiseEvent" and len(parts) == 4:
            try:
                data = json.loads(body) if body.strip() else None
            except ValueError:
                return problem_response(400, "The event body must be JSON.")
            await self._client.raise_orchestration_event(instance_id, parts[3], data=data)
            return Response(202)
        if method == "POST" and action == "terminate":
            await self._client.terminate_orchestration(instance_id, output=params.get("reason"))
            return Response(202)
        if method == "POST" and action == "suspend":
            await self._client.suspend_orchestration(instance_id, reason=params.get("reason"))
            return Response(202)
        if method == "POST" and action == "resume":
            await self._client.resume_orchestration(instance_id, reason=params.get("reason"))
            return Response(202)
        return problem_response(405, f"{method} is not supported on this management route.")
