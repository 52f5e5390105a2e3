"""The Durable Functions HTTP management API under /runtime/webhooks/durabletask.

URLs built by `create_check_status_response` / `create_http_management_payload` point
here, so they work locally as they do in Azure. The routes, parameters, status codes and
JSON follow the Durable Functions extension's HTTP API: list instances (filters and the
`x-ms-continuation-token` header), instance status with history, raise event, terminate,
suspend, resume, rewind, restart, purge (one, or many by filter), and entities (get,
signal, list). Every read and write goes through the durabletask client
(`AsyncTaskHubGrpcClient`), whichever backend runs.

When the app runs with ownership on, `ManagementKey` guards every route here: a random
key printed once at startup, required as `?code=` or `x-functions-key`.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from durabletask import client as dt
from durabletask.entities import EntityInstanceId, EntityMetadata
from durabletask.internal import client_helpers
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from devhost import durable_json as dj
from devhost.http_types import Problem, json_response, problem

PREFIX = "/runtime/webhooks/durabletask"
CONTINUATION_HEADER = "x-ms-continuation-token"
DEFAULT_PAGE = 100
MAX_PAGE = 1000

logger = logging.getLogger("devhost.management")

Endpoint = Callable[[Request], Awaitable[Response]]


def ownership_mode(environ: Mapping[str, str]) -> str | None:
    """Why the app's threads have owners (and so the management API needs a key), or None."""
    mode = environ.get("AUTH_MODE", "").strip().lower()
    if mode in ("app_service", "entra"):
        return f"AUTH_MODE={mode}"
    if environ.get("TRUST_CLIENT_PRINCIPAL_HEADER", "").strip().lower() == "true":
        return "TRUST_CLIENT_PRINCIPAL_HEADER=true"
    return None


class ManagementKey:
    """ASGI middleware: every request must carry the key as `?code=` or `x-functions-key`.

    The app's own routes check who owns a thread; these routes bypass the app, so with
    ownership on they must not be open to anyone who can reach the port.
    """

    def __init__(self, app: ASGIApp, key: str, reason: str) -> None:
        self.app = app
        self._key = key.encode()
        self._reason = reason

    @staticmethod
    def generate() -> str:
        return secrets.token_urlsafe(32)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(Request(scope)):
            response = problem(
                401,
                f"The management API needs devhost's management key, because the app runs with "
                f"{self._reason}: send it as ?code=KEY or the x-functions-key header. devhost "
                "prints it once in its startup log.",
                {"www-authenticate": 'FunctionsKey realm="durabletask"'},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, request: Request) -> bool:
        offered = request.headers.get("x-functions-key") or request.query_params.get("code") or ""
        return hmac.compare_digest(offered.encode(), self._key)


def _flag(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise Problem(400, f"{name}={value!r} must be true or false.")
    return lowered == "true"


def _time(request: Request, name: str) -> datetime | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return dj.parse_time(value)
    except ValueError:
        raise Problem(
            400, f"{name}={value!r} is not an ISO 8601 timestamp (e.g. 2026-01-31T12:00:00Z)."
        ) from None


def _top(request: Request) -> int:
    value = request.query_params.get("top")
    if not value:
        return DEFAULT_PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise Problem(400, f"top={value!r} must be a whole number from 1 to {MAX_PAGE}.")
    return int(value)


def _statuses(request: Request) -> list[dt.OrchestrationStatus] | None:
    raw = [
        s.strip() for v in request.query_params.getlist("runtimeStatus") for s in v.split(",") if s.strip()
    ]
    if not raw:
        return None
    statuses = []
    for name in raw:
        status = dj.STATUS_BY_NAME.get(name.lower())
        if status is None and name.lower() != "canceled":  # Canceled exists in DF, never here
            known = ", ".join(dj.STATUS_NAMES.values())
            raise Problem(400, f"runtimeStatus {name!r} is not one of {known}.")
        if status is not None:
            statuses.append(status)
    return statuses


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise Problem(400, "The request body must be JSON.") from None


class ManagementApi:
    """The management routes, bound to one durabletask client."""

    def __init__(self, client: dt.AsyncTaskHubGrpcClient) -> None:
        self._client = client

    def mount(self, key: str | None = None, reason: str = "") -> Mount:
        middleware = [Middleware(ManagementKey, key=key, reason=reason)] if key else []
        return Mount(PREFIX, routes=self.routes(), middleware=middleware)

    def routes(self) -> list[Route]:
        return [
            Route("/instances", self.list_instances, methods=["GET"]),
            Route("/instances/", self.list_instances, methods=["GET"]),
            Route("/instances", self.purge_many, methods=["DELETE"]),
            Route("/instances/{instance_id}", self.status, methods=["GET"], name="instance_status"),
            Route("/instances/{instance_id}", self.purge, methods=["DELETE"]),
            Route("/instances/{instance_id}/raiseEvent/{event}", self.raise_event, methods=["POST"]),
            Route("/instances/{instance_id}/terminate", self.terminate, methods=["POST"]),
            Route("/instances/{instance_id}/suspend", self.suspend, methods=["POST"]),
            Route("/instances/{instance_id}/resume", self.resume, methods=["POST"]),
            Route("/instances/{instance_id}/rewind", self.rewind, methods=["POST"]),
            Route("/instances/{instance_id}/restart", self.restart, methods=["POST"]),
            Route("/entities", self.list_entities, methods=["GET"]),
            Route("/entities/{name}", self.list_entities, methods=["GET"]),
            Route("/entities/{name}/{key}", self.get_entity, methods=["GET"]),
            Route("/entities/{name}/{key}", self.signal_entity, methods=["POST"]),
        ]

    # -- instances ---------------------------------------------------------------------

    async def list_instances(self, request: Request) -> Response:
        statuses = _statuses(request)
        show_input = _flag(request, "showInput", False)
        query = dt.OrchestrationQuery(
            created_time_from=_time(request, "createdTimeFrom"),
            created_time_to=_time(request, "createdTimeTo"),
            runtime_status=statuses,
            max_instance_count=_top(request),
            fetch_inputs_and_outputs=show_input,
            instance_id_prefix=request.query_params.get("instanceIdPrefix") or None,
        )
        if statuses == []:  # only Canceled was asked for
            return json_response([])
        token = request.headers.get(CONTINUATION_HEADER) or None
        states, next_token = await self._query_instances(query, token)
        headers = {CONTINUATION_HEADER: next_token} if next_token else {}
        return json_response([dj.instance_status(s, show_input=show_input) for s in states], headers=headers)

    async def _query_instances(
        self, query: dt.OrchestrationQuery, token: str | None
    ) -> tuple[list[dt.OrchestrationState], str | None]:
        """One page. The client's `get_all_orchestration_states` reads every page; this makes
        its request once, with the client's own request builder, stub and converter."""
        request = client_helpers.build_query_instances_req(
            query, wrappers_pb2.StringValue(value=token) if token else None
        )
        response: pb.QueryInstancesResponse = await self._client._get_stub().QueryInstances(request)
        states = [dt.parse_orchestration_state(s) for s in response.orchestrationState]
        return states, _next_token(response.continuationToken, token)

    async def _existing(self, instance_id: str) -> dt.OrchestrationState:
        state = await self._client.get_orchestration_state(instance_id, fetch_payloads=True)
        if state is None:
            raise Problem(404, f"Instance {instance_id!r} does not exist.")
        return state

    async def status(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        state = await self._existing(instance_id)
        body = dj.instance_status(state, show_input=_flag(request, "showInput", True))
        if _flag(request, "showHistory", False):
            events = await self._client.get_orchestration_history(instance_id)
            body["historyEvents"] = dj.history_events(
                events, show_output=_flag(request, "showHistoryOutput", False)
            )
        if state.runtime_status in dj.TERMINAL:
            failed = state.runtime_status == dt.OrchestrationStatus.FAILED
            code = 500 if failed and _flag(request, "returnInternalServerErrorOnFailure", False) else 200
            return json_response(body, code)
        return json_response(body, 202, {"location": str(request.url)})

    async def purge(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        await self._existing(instance_id)
        result = await self._client.purge_orchestration(instance_id)
        return json_response({"instancesDeleted": result.deleted_instance_count})

    async def purge_many(self, request: Request) -> Response:
        """Purge by filter, as Durable Functions: `createdTimeFrom` is required."""
        created_from = _time(request, "createdTimeFrom")
        if created_from is None:
            raise Problem(
                400,
                "Purging many instances needs createdTimeFrom (and optionally createdTimeTo, runtimeStatus).",
            )
        statuses = _statuses(request)
        if statuses == []:
            raise Problem(404, "No instances match.")
        result = await self._client.purge_orchestrations_by(
            created_time_from=created_from,
            created_time_to=_time(request, "createdTimeTo"),
            runtime_status=statuses,
        )
        if result.deleted_instance_count == 0:
            raise Problem(404, "No instances match.")
        return json_response({"instancesDeleted": result.deleted_instance_count})

    async def rewind(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        state = await self._existing(instance_id)
        if state.runtime_status != dt.OrchestrationStatus.FAILED:
            status = dj.STATUS_NAMES[state.runtime_status]
            raise Problem(
                410, f"Instance {instance_id!r} is {status}; only a Failed instance can be rewound."
            )
        await self._client.rewind_orchestration(instance_id, reason=request.query_params.get("reason"))
        return Response(status_code=202)

    async def restart(self, request: Request) -> Response:
        """Start the instance again with its original input; `restartWithNewInstanceId=true`
        gives the new run a new id. Answers 202 with the (new) instance's status URL."""
        instance_id = request.path_params["instance_id"]
        await self._existing(instance_id)
        new_id = await self._client.restart_orchestration(
            instance_id, restart_with_new_instance_id=_flag(request, "restartWithNewInstanceId", False)
        )
        status_url = str(request.url_for("instance_status", instance_id=new_id))
        return json_response({"id": new_id, "statusQueryGetUri": status_url}, 202, {"location": status_url})

    async def _running(self, instance_id: str, action: str) -> None:
        state = await self._existing(instance_id)
        if state.runtime_status in dj.TERMINAL:
            status = dj.STATUS_NAMES[state.runtime_status]
            raise Problem(410, f"Instance {instance_id!r} is {status}; it cannot {action}.")

    async def raise_event(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        data = await _json_body(request)
        await self._running(instance_id, "receive events")
        await self._client.raise_orchestration_event(instance_id, request.path_params["event"], data=data)
        return Response(status_code=202)

    async def terminate(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        await self._running(instance_id, "be terminated")
        await self._client.terminate_orchestration(instance_id, output=request.query_params.get("reason"))
        return Response(status_code=202)

    async def suspend(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        await self._running(instance_id, "be suspended")
        await self._client.suspend_orchestration(instance_id, reason=request.query_params.get("reason"))
        return Response(status_code=202)

    async def resume(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        await self._running(instance_id, "be resumed")
        await self._client.resume_orchestration(instance_id, reason=request.query_params.get("reason"))
        return Response(status_code=202)

    # -- entities ----------------------------------------------------------------------

    @staticmethod
    def _entity_id(request: Request) -> EntityInstanceId:
        try:
            return EntityInstanceId(request.path_params["name"], request.path_params["key"])
        except ValueError as error:
            raise Problem(400, f"Not a valid entity id: {error}") from None

    async def get_entity(self, request: Request) -> Response:
        entity_id = self._entity_id(request)
        metadata = await self._client.get_entity(entity_id, include_state=True)
        if metadata is None or metadata.get_state() is None:
            raise Problem(404, f"Entity {entity_id.entity}/{entity_id.key} does not exist.")
        return json_response(dj.entity_state(metadata))

    async def signal_entity(self, request: Request) -> Response:
        entity_id = self._entity_id(request)
        operation = request.query_params.get("op") or ""
        data = await _json_body(request)
        await self._client.signal_entity(entity_id, operation, input=data)
        return Response(status_code=202)

    async def list_entities(self, request: Request) -> Response:
        name = request.path_params.get("name")
        with_state = _flag(request, "fetchState", False)
        query = dt.EntityQuery(
            instance_id_starts_with=f"@{name.lower()}@" if name else None,
            last_modified_from=_time(request, "lastOperationTimeFrom"),
            last_modified_to=_time(request, "lastOperationTimeTo"),
            include_state=True,  # an entity without state is not listed, as in Durable Functions
            page_size=_top(request),
        )
        token = request.headers.get(CONTINUATION_HEADER) or None
        entities, next_token = await self._query_entities(query, token)
        headers = {CONTINUATION_HEADER: next_token} if next_token else {}
        listed = [dj.entity(e, with_state=with_state) for e in entities if e.get_state() is not None]
        return json_response(listed, headers=headers)

    async def _query_entities(
        self, query: dt.EntityQuery, token: str | None
    ) -> tuple[list[EntityMetadata], str | None]:
        """One page of `get_all_entities` (which reads every page)."""
        request = client_helpers.build_query_entities_req(
            query, wrappers_pb2.StringValue(value=token) if token else None
        )
        response: pb.QueryEntitiesResponse = await self._client._get_stub().QueryEntities(request)
        converter = self._client._data_converter
        entities = [EntityMetadata.from_entity_metadata(e, True, converter) for e in response.entities]
        return entities, _next_token(response.continuationToken, token)


def _next_token(received: wrappers_pb2.StringValue, sent: str | None) -> str | None:
    value = received.value if received is not None else ""
    if not value or value == "0" or value == sent:
        return None
    return str(value)
