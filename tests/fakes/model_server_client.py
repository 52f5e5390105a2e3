"""Scripting a fake model server that runs in another process, over its control routes."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.fakes.model_steps import Step


class FakeModelServerClient:
    """Scripts a FakeModelServer running elsewhere (another process) over its control routes."""

    def __init__(self, root_url: str, *, timeout: float = 10.0) -> None:
        self.root_url = root_url.rstrip("/").removesuffix("/v1")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.root_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def enqueue(self, *steps: Step) -> None:
        self._call("POST", "/_script", {"steps": list(steps)})

    def set_default(self, step: Step) -> None:
        self._call("PUT", "/_default", step)

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/_requests")["requests"]
        return result

    def clear_requests(self) -> None:
        self._call("DELETE", "/_requests")

    def reset(self) -> None:
        self._call("POST", "/_reset")

    def health(self) -> bool:
        return bool(self._call("GET", "/_health").get("ok"))
