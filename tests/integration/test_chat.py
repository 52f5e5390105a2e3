"""scripts/chat (devhost/chat.py) as a subprocess: against devhost with the fake model, and
against a scripted stand-in of the thread API for the tool-approval flow."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fakes.model_server import ECHO_PREFIX, FakeModelServer, error
from tests.integration.harness import REPO, DevhostProcess, free_port


def chat(url: str, stdin: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devhost.chat", "--url", url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def base_url(devhost: DevhostProcess) -> str:
    return f"http://127.0.0.1:{devhost.port}"


def test_piped_lines_are_answered_in_turn_and_it_exits_0(
    devhost: DevhostProcess, model: FakeModelServer
) -> None:
    done = chat(base_url(devhost), "Hello there\n\nWhat is two plus two?\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{ECHO_PREFIX}Hello there", f"{ECHO_PREFIX}What is two plus two?"]
    assert done.stderr.startswith("thread ")
    assert "\r" not in done.stderr  # no spinner without a terminal
    assert len(model.requests) == 2


def test_history_pages_through_the_thread_and_thread_joins_it(
    devhost: DevhostProcess, model: FakeModelServer
) -> None:
    first = chat(base_url(devhost), "one\ntwo\n/history\n")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[:2] == [f"{ECHO_PREFIX}one", f"{ECHO_PREFIX}two"]
    history = lines[2:]
    assert [line.split("] ", 1)[1] for line in history] == [
        "system: You are a test assistant.",
        "user: one",
        f"assistant: {ECHO_PREFIX}one",
        "user: two",
        f"assistant: {ECHO_PREFIX}two",
    ]
    thread_id = first.stderr.split()[1]
    again = chat(base_url(devhost), "three\n/history\n/quit\nnot sent\n", "--thread", thread_id)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == f"{ECHO_PREFIX}three"
    assert again.stdout.splitlines()[-1].endswith(f"assistant: {ECHO_PREFIX}three")
    assert "not sent" not in again.stdout


def test_new_starts_another_thread_and_errors_are_printed(
    devhost: DevhostProcess, model: FakeModelServer
) -> None:
    model.enqueue(error(400, message="bad prompt"))
    done = chat(base_url(devhost), "first\n/new\nsecond\n/history\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("error: ") and "400" in lines[0]
    assert lines[1] == f"{ECHO_PREFIX}second"
    assert [line.split("] ", 1)[1] for line in lines[2:]][1:] == [
        "user: second",
        f"assistant: {ECHO_PREFIX}second",
    ]
    assert done.stderr.count("thread ") == 2


def test_an_unreachable_or_bad_url_fails_with_one_line() -> None:
    refused = chat(f"http://127.0.0.1:{free_port()}", "hello\n", timeout=30)
    assert refused.returncode != 0
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: cannot reach"), (
        refused.stderr
    )
    bad = chat("not a url", "hello\n", timeout=30)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "--url" in bad.stderr


def test_unknown_thread_is_one_line_error(devhost: DevhostProcess) -> None:
    done = chat(base_url(devhost), "hello\n", "--thread", "no-such-thread")
    assert done.returncode != 0
    assert done.stderr == "error: thread 'no-such-thread' does not exist at " + base_url(devhost) + "\n"


# -- the approval flow, against a stand-in that speaks the thread API's tool contract ----------


class FakeThreadApi:
    """Thread API stand-in: the message waits on one tool call approval, then is answered."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.decision: bool | None = None
        self.polls = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(api.handle("GET", self.path, dict(self.headers), None))

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                self._answer(api.handle("POST", self.path, dict(self.headers), json.loads(raw or b"null")))

            def _answer(self, reply: tuple[int, Any]) -> None:
                data = json.dumps(reply[1]).encode()
                self.send_response(reply[0])
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        self.requests.append((method, path, {k.lower(): v for k, v in headers.items()}, body))
        route = path.split("?")[0]
        if method == "POST" and route == "/api/threads":
            return 201, {"thread_id": "t1", "state": "idle"}
        if method == "POST" and route == "/api/threads/t1/messages":
            return 202, {"thread_id": "t1", "message_id": body["message_id"], "status": "queued"}
        if method == "GET" and route.startswith("/api/threads/t1/messages/"):
            self.polls += 1
            if self.decision is None:
                return 200, {"status": "answering", "reply": None}
            text = "deleted the file" if self.decision else "left the file alone"
            return 200, {"status": "answered", "reply": {"role": "assistant", "content": text}}
        if method == "GET" and route == "/api/threads/t1":
            if self.polls < 2:
                return 200, {"thread_id": "t1", "state": "running_tools", "tools": ["list_files"]}
            return 200, {
                "thread_id": "t1",
                "state": "awaiting_approval",
                "pending_approvals": [
                    {
                        "call_id": "c1",
                        "tool": "delete_file",
                        "arguments": {"path": "notes.txt"},
                        "approve_url": "/api/threads/t1/approvals/c1",
                    }
                ],
            }
        if method == "POST" and route == "/api/threads/t1/approvals/c1":
            self.decision = bool(body["approve"])
            return 200, {"call_id": "c1", "approved": self.decision}
        return 404, {"title": "Not Found", "status": 404, "detail": f"no route {method} {route}"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def thread_api() -> Iterator[FakeThreadApi]:
    api = FakeThreadApi()
    yield api
    api.close()


@pytest.mark.parametrize(("answer", "reply"), [("y", "deleted the file"), ("n", "left the file alone")])
def test_a_tool_call_awaiting_approval_is_asked_about(
    thread_api: FakeThreadApi, answer: str, reply: str
) -> None:
    done = chat(thread_api.url, f"tidy up\n{answer}\n", "--key", "k-123", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [reply]
    assert 'wants to run delete_file with {"path": "notes.txt"}' in done.stderr
    approvals = [r for r in thread_api.requests if "/approvals/" in r[1]]
    assert [r[3] for r in approvals] == [{"approve": answer == "y"}]
    assert all(r[2].get("x-functions-key") == "k-123" for r in thread_api.requests)


def test_end_of_input_leaves_the_approval_pending(thread_api: FakeThreadApi) -> None:
    done = chat(thread_api.url, "tidy up\n", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "left awaiting approval" in done.stderr
    assert not [r for r in thread_api.requests if "/approvals/" in r[1]]
