"""devhost's HTTP front end: a Starlette app that serves the app's HTTP triggers and devhost's own routes.

devhost's own routes are ordinary Starlette routes: the Durable Functions management API
under /runtime/webhooks/durabletask (management.py) and devhost's pages under /_devhost.
Everything else goes to `dispatch`, which matches the app's Functions route templates
(routing.py) under the host.json route prefix. Those stay out of Starlette's router because
Starlette cannot express them: literals match case-insensitively, `{id:int}` and the other
constraints, optional `{x?}` and catch-all `{*rest}` segments, and Functions' precedence
(more literal segments win).

The function gets a `func.HttpRequest` (method, URL, headers, query, route parameters, body)
and its `func.HttpResponse` goes back to the caller. devhost's own errors are problem
details: an unknown route is 404, a wrong method 405 with `Allow`, a body over the
Functions host's 100 MB limit 413, an unreachable backend 503 naming it and the fix, and a
crashing function 500 with the traceback in the log only; the host keeps serving. Each
request is logged on one line with control characters escaped and secrets redacted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func
import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devhost.app_index import HTTP_TRIGGER, IndexedFunction
from devhost.http_types import Problem, problem
from devhost.invoker import Invoker
from devhost.logs import escape, redact_query
from devhost.management import PREFIX as MANAGEMENT_PREFIX
from devhost.routing import RouteTemplate, compile_route

logger = logging.getLogger("devhost.http")

MAX_REQUEST_BYTES = 100 * 1024 * 1024  # the Functions host's default request limit
UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class BackendLabel:
    """How devhost names its backend to a person: where it is, and what to do if it is down."""

    target: str
    hint: str


class AccessLog:
    """Outermost middleware: one log line per request, and a 500 problem for anything that
    escaped the routes, so neither uvicorn nor Starlette prints a traceback to the caller."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            logger.info("%s: the client went away", describe_request(scope))
            return
        except Exception:
            logger.exception("%s failed inside devhost", describe_request(scope))
            if status:
                raise  # the response has begun; the server closes the connection
            await problem(500, "devhost hit an unexpected error; see its log.")(scope, receive, tracking_send)
        milliseconds = (time.perf_counter() - started) * 1000
        logger.info("%s -> %d (%.0f ms)", describe_request(scope), status, milliseconds)


def describe_request(scope: Scope) -> str:
    """`METHOD /path?query` for the log: one line, the management key redacted."""
    query = redact_query(scope.get("query_string", b"").decode("latin-1"))
    target = scope.get("path", "") + (f"?{query}" if query else "")
    return escape(f"{scope.get('method', '?')} {target}")


class CanonicalPrefix:
    """The Functions host matches its webhook paths case-insensitively (Durable Functions'
    own docs write `/runtime/webhooks/durableTask`); Starlette's router does not. This
    rewrites the prefix to its one spelling, so every spelling reaches the same routes
    (and the same key check)."""

    def __init__(self, app: ASGIApp, prefixes: Sequence[str]) -> None:
        self.app = app
        self._prefixes = [(p.lower(), p) for p in prefixes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        lowered = path.lower()
        for folded, canonical in self._prefixes:
            if lowered.startswith(folded) and not path.startswith(canonical):
                if len(path) == len(canonical) or path[len(canonical)] == "/":
                    scope = {**scope, "path": canonical + path[len(canonical) :]}
                break
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, by Content-Length or as they stream."""

    def __init__(self, app: ASGIApp, limit: int = MAX_REQUEST_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"The request body exceeds {self.limit} bytes."
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await problem(413, too_large, {"connection": "close"})(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise Problem(413, too_large, {"connection": "close"})
            return message

        await self.app(scope, limited_receive, send)


class FunctionRoutes:
    """The app's HTTP triggers, matched by their Functions route templates."""

    def __init__(self, functions: Sequence[IndexedFunction], invoker: Invoker, route_prefix: str) -> None:
        self._invoker = invoker
        self.prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
        routes = [(compile_route(f.route or f.name), f) for f in functions if f.trigger_type == HTTP_TRIGGER]
        self._routes: list[tuple[RouteTemplate, IndexedFunction]] = sorted(
            routes, key=lambda r: (-r[0].literal_segments, r[0].template)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An ASGI app rather than an endpoint, so Starlette's route takes every method."""
        response = await self.dispatch(Request(scope, receive))
        await response(scope, receive, send)

    async def dispatch(self, request: Request) -> Response:
        path = request.url.path
        method = request.method.upper()
        if self.prefix and not (path == self.prefix or path.startswith(self.prefix + "/")):
            raise Problem(404, f"No function serves {method} {path}; the API lives under {self.prefix}/.")
        relative = path[len(self.prefix) :]
        allowed: set[str] = set()
        for template, function in self._routes:
            params = template.match(relative)
            if params is None:
                continue
            if method not in function.methods:
                allowed.update(function.methods)
                continue
            return await self._invoke(function, request, params)
        if allowed:
            methods = ", ".join(sorted(allowed))
            raise Problem(405, f"{method} is not allowed here; use {methods}.", {"allow": methods})
        raise Problem(404, f"No function serves {method} {path}.")

    async def _invoke(self, function: IndexedFunction, request: Request, params: dict[str, str]) -> Response:
        body = await request.body()
        query = request.url.query
        headers = dict(request.headers.items())
        if request.client is not None:
            # As the Functions front end does: the caller's address ends X-Forwarded-For.
            forwarded = headers.get("x-forwarded-for")
            headers["x-forwarded-for"] = (
                f"{forwarded}, {request.client.host}" if forwarded else request.client.host
            )
        incoming = func.HttpRequest(
            method=request.method.upper(),
            url=str(request.url),
            headers=headers,
            params=dict(parse_qsl(query, keep_blank_values=True)),
            route_params=params,
            body=body,
        )
        try:
            outgoing = await self._invoker.http(function, incoming)
        except Exception:
            logger.exception(
                "function %s crashed on %s", escape(function.name), describe_request(request.scope)
            )
            return problem(500, f"The function {function.name!r} failed; the details are in devhost's log.")
        headers = {k: v for k, v in outgoing.headers.items() if k.lower() != "content-length"}
        if outgoing.mimetype and not any(k.lower() == "content-type" for k in headers):
            charset = f"; charset={outgoing.charset}" if outgoing.charset else ""
            headers["content-type"] = f"{outgoing.mimetype}{charset}"
        return Response(outgoing.get_body() or b"", outgoing.status_code, headers=headers)


def build_app(
    functions: Sequence[IndexedFunction],
    invoker: Invoker,
    route_prefix: str,
    *,
    own_routes: Sequence[BaseRoute] = (),
    backend: BackendLabel | None = None,
) -> Starlette:
    """The ASGI app uvicorn serves: devhost's own routes first, then the app's functions."""
    functions_routes = FunctionRoutes(functions, invoker, route_prefix)

    async def http_problem(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if isinstance(error, Problem):
            return problem(error.status_code, error.detail, error.headers)
        detail = {
            404: f"No route serves {request.method} {request.url.path}.",
            405: f"{request.method} is not allowed here.",
        }.get(error.status_code, error.detail)
        return problem(error.status_code, detail, error.headers)

    async def backend_problem(request: Request, error: Exception) -> Response:
        assert isinstance(error, grpc.aio.AioRpcError)
        code = error.code()
        where = backend.target if backend else "its address"
        if code in UNREACHABLE:
            logger.warning(
                "the Durable Task backend at %s did not answer %s (%s)",
                where,
                describe_request(request.scope),
                code.name,
            )
            fix = backend.hint if backend else "check --backend"
            return problem(
                503,
                f"devhost could not reach the Durable Task backend at {where}: it tried a gRPC call "
                f"and got {code.name}. {fix}",
                {"retry-after": "5"},
            )
        if code == grpc.StatusCode.NOT_FOUND:
            return problem(404, f"The backend has no such item: {error.details()}")
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
            return problem(400, f"The backend refused the request: {error.details()}")
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return problem(409, f"The backend refused the request: {error.details()}")
        logger.warning(
            "the Durable Task backend at %s failed %s: %s", where, describe_request(request.scope), code.name
        )
        return problem(502, f"The Durable Task backend at {where} failed ({code.name}): {error.details()}")

    routes: list[BaseRoute] = [*own_routes, Route("/{path:path}", functions_routes)]
    handlers: dict[Any, Any] = {HTTPException: http_problem, grpc.aio.AioRpcError: backend_problem}
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(AccessLog),
            Middleware(CanonicalPrefix, prefixes=[MANAGEMENT_PREFIX]),
            Middleware(BodyLimit),
        ],
        exception_handlers=handlers,
    )
