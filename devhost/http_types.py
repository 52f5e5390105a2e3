"""A minimal HTTP response value used by devhost's own routes (management, errors)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, data: Any, status: int = 200, content_type: str = "application/json") -> Response:
        return cls(status, json.dumps(data).encode(), [("content-type", content_type)])


def problem_response(status: int, detail: str) -> Response:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    return Response.json(body, status, "application/problem+json")
