"""JSON responses and RFC 9457 problem details for the HTTP API.

`handle_errors` wraps every handler: a `DurableAgentError` becomes a problem response
with its status and message; anything unexpected is logged with its traceback and
becomes a 500 whose detail never exposes internals.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import azure.functions as func

from agent.errors import DurableAgentError
from agent.settings import get_settings
from agent.telemetry import configure_telemetry, http_request_span

logger = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://github.com/durable-agent/durable-agent/blob/main/README.md#errors"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False), status_code=status, mimetype="application/json", headers=headers
    )


def problem(
    status: int, detail: str, *, code: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> func.HttpResponse:
    title = HTTPStatus(status).phrase
    body = {
        "type": f"{PROBLEM_TYPE_BASE}-{code}" if code else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        **({"code": code} if code else {}),
        **extra,
    }
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        mimetype="application/problem+json",
        headers=headers,
    )


Handler = Callable[..., Awaitable[func.HttpResponse]]


def _ensure_telemetry() -> None:
    # A bad setting surfaces as the handler's own problem response, not here.
    with contextlib.suppress(DurableAgentError):
        configure_telemetry(get_settings())


def handle_errors(handler: Handler, route: str) -> Handler:
    """Wrap a handler: problem details for errors, and one telemetry span per request."""

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> func.HttpResponse:
        request = next((a for a in (*args, *kwargs.values()) if isinstance(a, func.HttpRequest)), None)
        _ensure_telemetry()
        with http_request_span(request.method if request else "HTTP", route) as span:
            response = await _respond(handler, args, kwargs)
            span.status_code = response.status_code
            return response

    return wrapper


async def _respond(handler: Handler, args: Any, kwargs: Any) -> func.HttpResponse:
    try:
        return await handler(*args, **kwargs)
    except DurableAgentError as error:
        if error.http_status >= 500:
            logger.warning("%s failed: %s", handler.__name__, error.message)
        retry_after = getattr(error, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if isinstance(retry_after, int) else None
        return problem(error.http_status, error.message, code=error.code, headers=headers)
    except Exception:
        logger.exception("%s failed unexpectedly", handler.__name__)
        return problem(
            500, "The server hit an unexpected error; see the host log for details.", code="internal"
        )
