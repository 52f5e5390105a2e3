"""devhost's HTTP front end: an ASGI app that routes requests to HTTP-triggered functions.

Requests under `/<routePrefix>/` are matched against the app's route templates and
methods; the function gets a `func.HttpRequest` (method, URL, headers, query, route
parameters, body) and its `func.HttpResponse` goes back to the caller. Requests under
/runtime/webhooks/durabletask go to the management API. Unknown routes get 404 and wrong
methods 405, both as problem details; a crashing function gets a 500 problem, never a
traceback, and the host keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func

from devhost.app_index import HTTP_TRIGGER, IndexedFunction
from devhost.http_types import Response, problem_response
from devhost.invoker import Invoker
from devhost.management import PREFIX as MANAGEMENT_PREFIX
from devhost.management import ManagementApi
from devhost.routing import RouteTemplate, compile_route

logger = logging.getLogger("devhost.http")

MAX_REQUEST_BYTES = 100 * 1024 * 1024  # the Functions host's default request limit

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class HttpFrontend:
    def __init__(
        self,
        functions: Sequence[IndexedFunction],
        invoker: Invoker,
        management: ManagementApi,
        route_prefix: str = "api",
    ) -> None:
        self._invoker = invoker
        self._management = management
        self._prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
        routes = [(compile_route(f.route or f.name), f) for f in functions if f.trigger_type == HTTP_TRIGGER]
        self._routes: list[tuple[RouteTemplate, IndexedFunction]] = sorted(
            routes, key=lambda r: (-r[0].literal_segments, r[0].template)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = await self._read_body(receive)
        if body is None:
            await self._send(
                send, problem_response(413, f"The request body exceeds {MAX_REQUEST_BYTES} bytes.")
            )
            return
        try:
            response = await self._respond(scope, body)
        except Exception:
            logger.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            response = problem_response(500, "devhost hit an unexpected error; see its log.")
        logger.info("%s %s -> %d", scope["method"], scope["path"], response.status)
        await self._send(send, response)

    @staticmethod
    async def _read_body(receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_REQUEST_BYTES:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    @staticmethod
    async def _send(send: Send, response: Response) -> None:
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        if not any(k == b"content-length" for k, _ in headers):
            headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _respond(self, scope: Scope, body: bytes) -> Response:
        path: str = scope["path"]
        method: str = scope["method"].upper()
        query = scope.get("query_string", b"").decode("latin-1")
        if path == MANAGEMENT_PREFIX or path.startswith(MANAGEMENT_PREFIX + "/"):
            return await self._management.handle(method, path, query, body)
        if self._prefix and not (path == self._prefix or path.startswith(self._prefix + "/")):
            return problem_response(404, f"No route for {path}; the API lives under {self._prefix}/.")
        relative = path[len(self._prefix) :]
        allowed: set[str] = set()
        for template, function in self._routes:
            params = template.match(relative)
            if params is None:
                continue
            if method not in function.methods:
                allowed.update(function.methods)
                continue
            request = self._request(scope, method, query, body, params)
            return self._convert(await self._invoker.http(function, request))
        if allowed:
            response = problem_response(
                405, f"{method} is not allowed here; use {', '.join(sorted(allowed))}."
            )
            return Response(
                response.status, response.body, [*response.headers, ("allow", ", ".join(sorted(allowed)))]
            )
        return problem_response(404, f"No function serves {method} {path}.")

    @staticmethod
    def _request(
        scope: Scope, method: str, query: str, body: bytes, params: dict[str, str]
    ) -> func.HttpRequest:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host") or "{}:{}".format(*scope.get("server") or ("127.0.0.1", 7071))
        path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
        url = f"{scope.get('scheme', 'http')}://{host}{path}"
        if query and "?" not in url:
            url += f"?{query}"
        return func.HttpRequest(
            method=method,
            url=url,
            headers=headers,
            params=dict(parse_qsl(query, keep_blank_values=True)),
            route_params=params,
            body=body,
        )

    @staticmethod
    def _convert(response: func.HttpResponse) -> Response:
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        if response.mimetype and not any(k.lower() == "content-type" for k, _ in headers):
            charset = f"; charset={response.charset}" if response.charset else ""
            headers.append(("content-type", f"{response.mimetype}{charset}"))
        return Response(response.status_code, response.get_body() or b"", headers)
