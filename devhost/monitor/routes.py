"""The monitor's routes: the page, its static files, and JSON over the durabletask client.

JSON routes (relative to where the monitor is mounted, `/_devhost`):

- `GET  api/config`: where the app's HTTP API lives (its route prefix)
- `GET  api/instances?limit=N&all=1`: orchestration instances named `thread` (every
  orchestration with `all=1`), walking QueryInstances continuation tokens until `limit`
  rows are found; `continuation_token` is set when more exist
- `GET  api/instances/{id}`: state, custom status, input, output, failure
- `GET  api/instances/{id}/history`: the current execution's history as timeline rows
- `GET  api/instances/{id}/entities`: the thread's entities that exist (root, legacy history)
- `POST api/instances/{id}/suspend|resume|terminate`: `{"reason"?}`
- `POST api/instances/{id}/raise-event`: `{"name", "data"?}`
- `POST api/instances/{id}/purge`: delete a finished instance and its history

Errors are problem details (`application/problem+json`) with a `detail` for the page.
With a `key` (devhost's management key, when the app runs with thread owners) every JSON
route but `api/config` needs it as `x-functions-key` or `?code=`, like the management API.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from durabletask.client import AsyncTaskHubGrpcClient, parse_orchestration_state
from durabletask.entities import EntityInstanceId
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from agent.contract import LEGACY_HISTORY_ENTITY, THREAD_ENTITY, THREAD_ORCHESTRATION
from devhost.monitor import views

logger = logging.getLogger("devhost.monitor")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: instances asked of the backend per QueryInstances call
QUERY_PAGE_SIZE = 100
MAX_EVENT_NAME = 256
NO_STORE = {"cache-control": "no-store"}
#: continuation token values that mean "no more instances" (backends differ)
_END_OF_QUERY = frozenset({"", "0"})

Endpoint = Callable[[Request], Awaitable[Response]]


class Problem(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem(status: int, detail: str) -> JSONResponse:
    titles = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        415: "Unsupported Media Type",
        502: "Bad Gateway",
    }
    return JSONResponse(
        {"type": "about:blank", "title": titles.get(status, "Error"), "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
        headers=NO_STORE,
    )


def ok(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=NO_STORE)


_GRPC_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
}


def _guarded(handler: Endpoint, key: str | None) -> Endpoint:
    """The key check (when devhost has a management key), then the handler; problems and
    backend errors become problem details, never tracebacks."""

    async def endpoint(request: Request) -> Response:
        try:
            if key is not None:
                _check_key(request, key)
            return await handler(request)
        except Problem as error:
            return problem(error.status, error.detail)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            status = _GRPC_STATUS.get(code, 502)
            return problem(status, f"The backend answered {code.name}: {error.details() or 'no details'}")

    return endpoint


def _check_key(request: Request, key: str) -> None:
    offered = request.headers.get("x-functions-key") or request.query_params.get("code") or ""
    if not hmac.compare_digest(offered.encode(), key.encode()):
        raise Problem(
            401,
            "This devhost guards its management routes with a key (the app runs with owners): "
            "open the monitor as /_devhost/?code=KEY with the key devhost printed at startup.",
        )


def _check_same_origin(request: Request) -> None:
    """Actions change state, so only the page itself may send them: a JSON content type
    (which a cross-site form cannot send without a CORS preflight, never answered here)
    and, when the browser names an origin, this host's."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Problem(415, "Send actions as JSON (Content-Type: application/json).")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Problem(403, "Actions are accepted from the monitor page only (cross-origin request refused).")


async def _json_body(request: Request) -> dict[str, Any]:
    _check_same_origin(request)
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise Problem(400, "The request body must be JSON.") from None
    if not isinstance(body, dict):
        raise Problem(400, "The request body must be a JSON object.")
    return body


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, f"'{name}' must be an integer.") from None
    if not low <= value <= high:
        raise Problem(400, f"'{name}' must be between {low} and {high}.")
    return value


class MonitorApi:
    def __init__(self, client: AsyncTaskHubGrpcClient, api_prefix: str, key_required: bool) -> None:
        self._client = client
        self._api_prefix = "/" + api_prefix.strip("/") if api_prefix.strip("/") else ""
        self._key_required = key_required

    async def config(self, request: Request) -> Response:
        return ok(
            {
                "api_prefix": self._api_prefix,
                "thread_orchestration": THREAD_ORCHESTRATION,
                "key_required": self._key_required,
            }
        )

    async def instances(self, request: Request) -> Response:
        limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        everything = request.query_params.get("all") in ("1", "true")
        token = request.query_params.get("continuation_token") or None
        rows: list[dict[str, Any]] = []
        while True:
            query = pb.InstanceQuery(
                maxInstanceCount=QUERY_PAGE_SIZE,
                # the list polls; inputs can be large, custom status comes anyway
                fetchInputsAndOutputs=False,
                continuationToken=wrappers_pb2.StringValue(value=token) if token else None,
            )
            response = await self._client._get_stub().QueryInstances(pb.QueryInstancesRequest(query=query))
            for proto in response.orchestrationState:
                state = parse_orchestration_state(proto)
                if everything or state.name == THREAD_ORCHESTRATION:
                    rows.append(views.instance_summary(state))
            next_token = response.continuationToken.value if response.HasField("continuationToken") else ""
            if next_token in _END_OF_QUERY or next_token == token:
                token = None
                break
            token = next_token
            if len(rows) >= limit:
                break
        rows.sort(key=lambda r: r["last_updated_at"] or "", reverse=True)
        return ok({"instances": rows, "continuation_token": token})

    async def _state(self, instance_id: str) -> Any:
        state = await self._client.get_orchestration_state(instance_id, fetch_payloads=True)
        if state is None:
            raise Problem(404, f"No orchestration instance '{instance_id}' (purged, or never created).")
        return state

    async def instance(self, request: Request) -> Response:
        state = await self._state(request.path_params["instance_id"])
        return ok(views.instance_detail(state))

    async def history(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        await self._state(instance_id)
        try:
            events = await self._client.get_orchestration_history(instance_id)
        except ValueError as error:  # an event type this durabletask cannot read
            raise Problem(502, f"The history could not be read: {error}") from None
        return ok({"instance_id": instance_id, "events": views.history_timeline(events)})

    async def entities(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        found = []
        for name in (THREAD_ENTITY, LEGACY_HISTORY_ENTITY):
            entity = await self._client.get_entity(EntityInstanceId(name, instance_id), include_state=True)
            if entity is not None:
                found.append(views.entity_view(entity))
        return ok({"instance_id": instance_id, "entities": found})

    async def action(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        action = request.path_params["action"]
        body = await _json_body(request)
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise Problem(400, "'reason' must be a string.")
        await self._state(instance_id)
        if action == "suspend":
            await self._client.suspend_orchestration(instance_id, reason=reason)
        elif action == "resume":
            await self._client.resume_orchestration(instance_id, reason=reason)
        elif action == "terminate":
            await self._client.terminate_orchestration(instance_id, output=reason)
        elif action == "raise-event":
            name = body.get("name")
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_EVENT_NAME:
                raise Problem(
                    400, f"'name' must be a non-empty string of at most {MAX_EVENT_NAME} characters."
                )
            await self._client.raise_orchestration_event(instance_id, name.strip(), data=body.get("data"))
        elif action == "purge":
            result = await self._client.purge_orchestration(instance_id)
            if not result.deleted_instance_count:
                raise Problem(409, f"'{instance_id}' was not purged; only a finished instance can be.")
            return ok(
                {"instance_id": instance_id, "action": action, "deleted": result.deleted_instance_count}
            )
        else:
            raise Problem(404, f"Unknown action '{action}'.")
        logger.info("monitor: %s %s", action, instance_id)
        return ok({"instance_id": instance_id, "action": action}, 202)


#: the page loads only its own files and talks only to its own origin
PAGE_HEADERS = {
    **NO_STORE,
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


async def to_index(request: Request) -> Response:
    """`/_devhost` -> `/_devhost/`: the page's relative URLs need the slash."""
    return RedirectResponse(request.url.path.rstrip("/") + "/", status_code=307)


async def _index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


def build_routes(
    client: AsyncTaskHubGrpcClient, api_prefix: str = "api", key: str | None = None
) -> list[BaseRoute]:
    api = MonitorApi(client, api_prefix, key is not None)

    def json_route(path: str, handler: Endpoint, method: str) -> Route:
        return Route(path, _guarded(handler, key), methods=[method])

    return [
        Route("/", _index, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        # config is open: the page needs it to say that a key is required
        Route("/api/config", _guarded(api.config, None), methods=["GET"]),
        json_route("/api/instances", api.instances, "GET"),
        json_route("/api/instances/{instance_id}", api.instance, "GET"),
        json_route("/api/instances/{instance_id}/history", api.history, "GET"),
        json_route("/api/instances/{instance_id}/entities", api.entities, "GET"),
        json_route("/api/instances/{instance_id}/{action}", api.action, "POST"),
    ]
