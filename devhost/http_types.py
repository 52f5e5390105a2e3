"""The responses devhost itself writes: JSON and RFC 9457 problem details.

Errors devhost produces (no such route, wrong method, body too large, a crashing function,
a missing management key, an unreachable backend) are `application/problem+json` with a
`detail` a person can act on, the same shape the app uses for its own errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status, headers=dict(headers or {}), media_type="application/json")


def problem(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    return Response(json.dumps(body), status, headers=dict(headers or {}), media_type=PROBLEM_JSON)


class Problem(HTTPException):
    """Raised anywhere in a request to answer with a problem; rendered by the app's handler."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, detail, dict(headers) if headers else None)
