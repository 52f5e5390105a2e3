"""A scripted, OpenAI-compatible chat completions server for tests.

Tests drive the real `openai` client against it on loopback, so retries, timeouts, status
mapping and Azure paths are exercised over real HTTP instead of mocks. It serves
`POST /v1/chat/completions` (and `/chat/completions`) and Azure's
`POST /openai/deployments/{deployment}/chat/completions?api-version=...`.

Each chat request takes the next step from a script queue (see `reply`, `tool_calls`,
`error`, `content_filter`, `malformed`, `disconnect`); when the queue is empty the default
step answers, by default an echo of the last user message (or `echo: tool: <result>` when
the last message is a tool result), so integration tests can tell which message was
answered. Requests are recorded whole, so tests can assert the `tools` that were offered.
Every chat request is recorded (auth header values are replaced by
their kind and a short fingerprint).

Other processes (an app host under test) can script it over HTTP: `POST /_script`
(`{"steps": [...]}`), `PUT /_default`, `GET /_requests`, `DELETE /_requests`,
`POST /_reset`, `GET /_health` — see `FakeModelServerClient`. Run standalone with
`python -m tests.fakes.model_server --port 0 --script '[...]'`; it prints
`FAKE_MODEL_SERVER_URL=http://127.0.0.1:PORT` once it is listening.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.fakes.model_server_client import FakeModelServerClient
from tests.fakes.model_steps import (
    AZURE_CONTENT_FILTER_MESSAGE,
    STEP_KINDS,
    Step,
    content_filter,
    disconnect,
    echo,
    error,
    malformed,
    reply,
    tool_calls,
    validate_step,
)

__all__ = [
    "AZURE_CONTENT_FILTER_MESSAGE",
    "ECHO_PREFIX",
    "STEP_KINDS",
    "TOOL_ECHO_PREFIX",
    "FakeModelServer",
    "FakeModelServerClient",
    "RecordedRequest",
    "Step",
    "content_filter",
    "disconnect",
    "echo",
    "error",
    "fingerprint",
    "malformed",
    "reply",
    "tool_calls",
    "validate_step",
]

ECHO_PREFIX = "echo: "
#: what the echo step puts before a tool result it echoes (after ECHO_PREFIX)
TOOL_ECHO_PREFIX = "tool: "
DEFAULT_MODEL = "fake-model"
_AZURE_CHAT = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/chat/completions$")
_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_AUTH_HEADERS = ("authorization", "api-key")

# -- recording -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    auth: str | None  # "bearer", "api-key" or None; the value itself is never kept
    auth_fingerprint: str | None  # sha256 of the credential, first 16 hex digits
    served: str  # kind of step that answered, or "auth" / "not_found" / "bad_request"
    received_at: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[dict[str, Any]]:
        body = self.body if isinstance(self.body, dict) else {}
        messages = body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The `tools` the request offered ([] when none)."""
        body = self.body if isinstance(self.body, dict) else {}
        offered = body.get("tools")
        return offered if isinstance(offered, list) else []

    @property
    def tool_names(self) -> list[str]:
        return [str((t.get("function") or {}).get("name")) for t in self.tools if isinstance(t, dict)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint(secret: str) -> str:
    """How a recorded request identifies its credential without storing it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


# -- server ----------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    request_queue_size = 256
    owner: FakeModelServer

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.owner._lock:
            self.owner._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.owner._lock:
            self.owner._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away (timeouts, disconnects): expected in these tests
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    # Headers and body go out in separate writes on a kept-alive connection: with Nagle's
    # algorithm on, the body waits for the client's delayed ACK (about 40 ms on Linux).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if parts.path.startswith("/_"):
            self._control(method, parts.path, body)
            return
        azure = _AZURE_CHAT.match(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        auth, auth_fp, auth_ok = owner._check_auth(
            self.headers.get("Authorization"), self.headers.get("api-key")
        )
        if method != "POST" or not (azure or parts.path in _CHAT_PATHS):
            step, served = error(404, message=f"no route {method} {parts.path}", code="NotFound"), "not_found"
        elif not auth_ok:
            step, served = error(401, message="Access denied due to invalid credentials.", code="401"), "auth"
        elif not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            step, served = error(400, message="body must be JSON with a messages list"), "bad_request"
        else:
            step = owner._next_step()
            served = step["kind"]
        owner._record(
            RecordedRequest(
                method=method,
                path=parts.path,
                query=query,
                headers={k.lower(): v for k, v in self.headers.items() if k.lower() not in _AUTH_HEADERS},
                body=body,
                auth=auth,
                auth_fingerprint=auth_fp,
                served=served,
            )
        )
        if step.get("delay") and owner._stopping.wait(float(step["delay"])):
            self.close_connection = True
            return
        deployment = azure.group("deployment") if azure else None
        self._serve(step, body if isinstance(body, dict) else {}, deployment)

    def _serve(self, step: Step, request: dict[str, Any], deployment: str | None) -> None:
        kind = step["kind"]
        if kind == "disconnect":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "malformed":
            self._send(int(step.get("status", 200)), str(step["body"]).encode(), step.get("content_type"))
            return
        if kind == "error":
            payload = json.dumps(step["body"]).encode()
            self._send(int(step["status"]), payload, "application/json", step.get("headers") or {})
            return
        messages = request.get("messages") or []
        content = _echo(messages) if kind == "echo" else step.get("content")
        model = step.get("model") or request.get("model") or deployment or DEFAULT_MODEL
        usage = step.get("usage") or _usage(messages, content)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if kind == "tool_calls":
            message["tool_calls"] = step["tool_calls"]
        completion = {
            "id": f"chatcmpl-fake-{self.server.owner._count()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": step.get("finish_reason", "stop"),
                }
            ],
            "usage": usage,
        }
        self._send(200, json.dumps(completion).encode(), "application/json")

    def _control(self, method: str, path: str, body: Any) -> None:
        owner = self.server.owner
        try:
            if (method, path) == ("POST", "/_script"):
                steps = body.get("steps") if isinstance(body, dict) else body
                if not isinstance(steps, list):
                    raise ValueError('POST /_script takes {"steps": [...]} or a list of steps')
                owner.enqueue(*steps)
                result: Any = {"queued": owner.pending()}
            elif (method, path) == ("PUT", "/_default"):
                owner.set_default(body)
                result = {"default": body}
            elif (method, path) == ("GET", "/_requests"):
                result = {"requests": [r.to_dict() for r in owner.requests]}
            elif (method, path) == ("DELETE", "/_requests"):
                owner.clear_requests()
                result = {"cleared": True}
            elif (method, path) == ("POST", "/_reset"):
                owner.reset()
                result = {"reset": True}
            elif (method, path) == ("GET", "/_health"):
                result = {"ok": True, "pending": owner.pending()}
            else:
                self._send(404, json.dumps({"error": f"no control route {method} {path}"}).encode(), None)
                return
        except ValueError as bad:
            self._send(400, json.dumps({"error": str(bad)}).encode(), "application/json")
            return
        self._send(200, json.dumps(result).encode(), "application/json")

    def _send(
        self, status: int, payload: bytes, content_type: str | None, headers: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def _echo(messages: list[Any]) -> str:
    """`echo: <last user message>`, or `echo: tool: <content>` when the last message is a tool result."""
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    if last.get("role") == "tool":
        return ECHO_PREFIX + TOOL_ECHO_PREFIX + str(last.get("content") or "")
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return ECHO_PREFIX + (str(users[-1]) if users else "")


def _usage(messages: list[Any], content: str | None) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
    completion = len((content or "").split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class FakeModelServer:
    """The scripted server; start/stop it or use it as a context manager."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: Step | None = None,
        expected_api_key: str | None = None,
        expected_bearer: str | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._script: deque[Step] = deque()
        self._default: Step = validate_step(default or echo())
        self._requests: list[RecordedRequest] = []
        self._connections: set[Any] = set()
        self._served = 0
        self._stopping = threading.Event()
        self._arrived = threading.Condition(self._lock)
        self._expected_api_key = expected_api_key
        self._expected_bearer = expected_bearer
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self._host, self._port), _Handler)
        httpd.owner = self
        self._stopping.clear()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-model-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        httpd.shutdown()
        thread.join()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()  # joins the handler threads, which the shutdowns above released
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeModelServer is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def root_url(self) -> str:
        """`http://127.0.0.1:PORT`: the Azure endpoint form (AZURE_OPENAI_ENDPOINT)."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`: the OpenAI-compatible form (OPENAI_BASE_URL)."""
        return f"{self.root_url}/v1"

    # scripting

    def enqueue(self, *steps: Step) -> None:
        checked = [validate_step(s) for s in steps]
        with self._lock:
            self._script.extend(checked)

    def set_default(self, step: Step) -> None:
        checked = validate_step(step)
        with self._lock:
            self._default = checked

    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._default = echo()

    # recordings

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every chat request so far (control routes excluded), oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `count` requests were recorded; raises TimeoutError otherwise."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"expected {count} requests, saw {len(self._requests)}")
            return list(self._requests)

    # used by the handler

    def _next_step(self) -> Step:
        with self._lock:
            return self._script.popleft() if self._script else dict(self._default)

    def _count(self) -> int:
        with self._lock:
            self._served += 1
            return self._served

    def _record(self, request: RecordedRequest) -> None:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()

    def _check_auth(
        self, authorization: str | None, api_key: str | None
    ) -> tuple[str | None, str | None, bool]:
        if authorization and authorization.lower().startswith("bearer "):
            secret: str | None = authorization[len("bearer ") :]
            kind: str | None = "bearer"
        elif api_key:
            secret, kind = api_key, "api-key"
        else:
            secret = kind = None
        ok = True
        if self._expected_bearer is not None or self._expected_api_key is not None:
            ok = (kind == "bearer" and secret == self._expected_bearer) or (
                kind == "api-key" and secret == self._expected_api_key
            )
        return kind, fingerprint(secret) if secret else None, ok


def _load_json_arg(value: str) -> Any:
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as handle:
            return json.load(handle)
    return json.loads(value)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible fake model server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", default="[]", help="JSON list of steps, or @file")
    parser.add_argument("--default", default=None, help="JSON step used when the script is empty, or @file")
    parser.add_argument("--api-key", default=None, help="require this api-key (or --bearer) on chat requests")
    parser.add_argument("--bearer", default=None, help="require this bearer token on chat requests")
    args = parser.parse_args(list(argv) if argv is not None else None)
    server = FakeModelServer(
        host=args.host,
        port=args.port,
        default=_load_json_arg(args.default) if args.default else None,
        expected_api_key=args.api_key,
        expected_bearer=args.bearer,
    )
    server.enqueue(*_load_json_arg(args.script))
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with server:
        print(f"FAKE_MODEL_SERVER_URL={server.root_url}", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
