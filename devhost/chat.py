"""`scripts/chat`: talk to the app, local or deployed, from a terminal.

It uses the public HTTP API only (stdlib urllib): it creates a thread (or joins
`--thread`), sends each line as a message, and polls for the reply while a spinner shows
the thread's state (`thinking`, `running_tools`, `awaiting_approval`, ...). A tool call that
needs approval gets a yes/no prompt. `/new` starts a new thread, `/history` prints the
thread's messages, `/quit` (or end of input) leaves. With standard input not a terminal
(piped), there is no spinner: each line is answered in turn and it exits 0 at end of input.
A network failure prints one line and exits 1.

Replies go to standard output; the rest (thread id, spinner, notes) to standard error.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:7071"
POLL_WAIT_SECONDS = 1  # each reply poll long-polls this long on the server
MIN_POLL_SECONDS = 0.25  # and polls never come faster than this, whatever the server does
REQUEST_TIMEOUT_SECONDS = 30.0
RETRIES = 5  # for requests that are safe to repeat, once a session is established
COMMANDS = "/new  /history  /quit"


class ChatError(Exception):
    """Something the user should read; ends the session (exit 1)."""


class Unreachable(ChatError):
    pass


@dataclass
class HttpReply:
    status: int
    body: Any


def problem_detail(body: Any, status: int) -> str:
    if isinstance(body, dict):
        for key in ("detail", "title", "message"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return f"HTTP {status}"


class Client:
    """JSON over HTTP against the app's base URL; `x-functions-key` when a key is given."""

    def __init__(self, base_url: str, key: str | None = None, *, sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url
        self.key = key
        self.retry = False  # set once the app has answered: then transient failures are retried
        self._sleep = sleep

    def call(
        self, method: str, path: str, body: Any = None, *, timeout: float = REQUEST_TIMEOUT_SECONDS
    ) -> HttpReply:
        attempts = RETRIES if self.retry else 1
        for attempt in range(1, attempts + 1):
            try:
                reply = self._once(method, path, body, timeout)
            except Unreachable:
                if attempt == attempts:
                    raise
            else:
                if reply.status < 500 or attempt == attempts:
                    return reply
            self._sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, method: str, path: str, body: Any, timeout: float) -> HttpReply:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.key:
            request.add_header("x-functions-key", self.key)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return HttpReply(response.status, _decode(response.read()))
        except urllib.error.HTTPError as error:
            with error:
                return HttpReply(error.code, _decode(error.read()))
        except urllib.error.URLError as error:
            raise Unreachable(f"cannot reach {self.base_url} ({_reason(error.reason)})") from None
        except (TimeoutError, OSError) as error:
            raise Unreachable(f"cannot reach {self.base_url} ({_reason(error)})") from None

    def expect(
        self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200,), **kw: Any
    ) -> Any:
        reply = self.call(method, path, body, **kw)
        if reply.status not in ok:
            raise ChatError(
                f"{method} {path}: {problem_detail(reply.body, reply.status)} (HTTP {reply.status})"
            )
        return reply.body


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


def _reason(reason: object) -> str:
    if isinstance(reason, BaseException):
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return str(text)
    return str(reason)


def normalize_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ChatError(f"--url {url!r} is not an http(s) URL, e.g. {DEFAULT_URL}")
    path = parsed.path.rstrip("/")
    if path.endswith("/api"):  # the API prefix is added per request
        path = path[: -len("/api")]
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


# -- the terminal -----------------------------------------------------------------------------


class Spinner:
    """A one-line status on a terminal, redrawn from its own thread; inert when not enabled."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self._stream = stream
        self.enabled = enabled
        self._text = ""
        self._started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self.FRAMES.encode(stream.encoding or "ascii")
            self._frames = self.FRAMES
        except (UnicodeEncodeError, LookupError):
            self._frames = "|/-\\"

    def start(self, text: str) -> None:
        if not self.enabled:
            return
        self._text, self._started = text, time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="chat-spinner", daemon=True)
        self._thread.start()

    def update(self, text: str) -> None:
        self._text = text

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._stream.write("\r\x1b[K")
        self._stream.flush()

    def _run(self) -> None:
        for frame in itertools.cycle(self._frames):
            elapsed = time.monotonic() - self._started
            self._stream.write(f"\r\x1b[K{frame} {self._text} ({elapsed:.0f}s)")
            self._stream.flush()
            if self._stop.wait(0.1):
                return


def describe_state(thread: Any) -> str:
    if not isinstance(thread, dict):
        return "waiting"
    state = str(thread.get("state") or "idle")
    if state == "running_tools":
        names = [_tool_name(t) for t in thread.get("tools") or []]
        return f"running {', '.join(n for n in names if n) or 'tools'}"
    return {
        "idle": "waiting",
        "thinking": "thinking",
        "awaiting_approval": "awaiting approval",
        "error": "error",
    }.get(state, state.replace("_", " "))


def _tool_name(tool: Any) -> str:
    if isinstance(tool, str):
        return tool
    if isinstance(tool, dict):
        for key in ("tool", "name"):
            if isinstance(tool.get(key), str):
                return str(tool[key])
    return ""


def format_arguments(arguments: Any, limit: int = 400) -> str:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_entry(entry: Any) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    seq, role = entry.get("seq", "?"), entry.get("role", "?")
    error = entry.get("error")
    if isinstance(error, dict):
        return f"[{seq}] {role}: error: {error.get('message', 'the turn failed')}"
    content = str(entry.get("content") or "")
    if role == "tool":
        name = entry.get("tool") or entry.get("name") or "tool"
        return f"[{seq}] tool {name}: {format_arguments(content)}"
    calls = entry.get("tool_calls")
    if isinstance(calls, list) and calls and not content:
        names = ", ".join(_tool_name(c) or "?" for c in calls)
        return f"[{seq}] {role}: (calls {names})"
    return f"[{seq}] {role}: {content}"


class Chat:
    def __init__(
        self,
        client: Client,
        *,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        interactive: bool,
        reply_timeout: float,
    ) -> None:
        self.client = client
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.interactive = interactive
        self.reply_timeout = reply_timeout
        self.spinner = Spinner(stderr, interactive and stderr.isatty())
        self.thread_id = ""
        self.unanswered = 0  # replies that did not come in time

    def note(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def read_line(self, prompt: str) -> str | None:
        if self.interactive:
            try:
                return input(prompt)
            except EOFError:
                return None
        line = self.stdin.readline()
        return None if line == "" else line.rstrip("\r\n")

    # -- threads and messages --

    def new_thread(self) -> None:
        body = self.client.expect("POST", "/api/threads", {}, ok=(201,))
        self.thread_id = str(body["thread_id"])
        self.note(f"thread {self.thread_id}")

    def join_thread(self, thread_id: str) -> None:
        quoted = urllib.parse.quote(thread_id, safe="")
        reply = self.client.call("GET", f"/api/threads/{quoted}")
        if reply.status == 404:
            raise ChatError(f"thread {thread_id!r} does not exist at {self.client.base_url}")
        if reply.status != 200:
            raise ChatError(
                f"thread {thread_id!r}: {problem_detail(reply.body, reply.status)} (HTTP {reply.status})"
            )
        self.thread_id = thread_id
        count = reply.body.get("message_count") if isinstance(reply.body, dict) else None
        self.note(f"thread {thread_id}" + (f" ({count} messages; /history shows them)" if count else ""))

    def send(self, content: str) -> None:
        message_id = uuid.uuid4().hex  # the same id on a retry never gets a second answer
        base = f"/api/threads/{self.thread_id}"
        reply = self.client.call("POST", f"{base}/messages", {"content": content, "message_id": message_id})
        if reply.status not in (200, 202):
            self.say(f"error: {problem_detail(reply.body, reply.status)}")
            return
        self.spinner.start("waiting")
        try:
            answer = self._wait(base, message_id)
        finally:
            self.spinner.stop()
        if answer is not None:
            self._print_reply(answer)

    def _wait(self, base: str, message_id: str) -> Any:
        deadline = time.monotonic() + self.reply_timeout
        asked: set[str] = set()
        while True:
            polled = time.monotonic()
            found = self.client.call("GET", f"{base}/messages/{message_id}?wait={POLL_WAIT_SECONDS}")
            if found.status != 200:
                raise ChatError(f"waiting for the reply: {problem_detail(found.body, found.status)}")
            if isinstance(found.body, dict) and found.body.get("status") in ("answered", "failed"):
                return found.body.get("reply") or {}
            if time.monotonic() > deadline:
                self.unanswered += 1
                self.say(f"error: no reply after {self.reply_timeout:.0f}s; it may still come (/history)")
                return None
            thread = self.client.call("GET", base)
            body = thread.body if thread.status == 200 else None
            self.spinner.update(describe_state(body))
            pending = body.get("pending_approvals") if isinstance(body, dict) else None
            for approval in pending or []:
                if not isinstance(approval, dict) or str(approval.get("call_id")) in asked:
                    continue
                asked.add(str(approval.get("call_id")))
                if not self._approve(base, approval):
                    return None
            time.sleep(max(0.0, MIN_POLL_SECONDS - (time.monotonic() - polled)))

    def _approve(self, base: str, approval: dict[str, Any]) -> bool:
        """Ask about one tool call and send the answer; False when input has ended."""
        call_id = str(approval.get("call_id"))
        tool = _tool_name(approval) or "a tool"
        self.spinner.stop()
        self.note(f"the assistant wants to run {tool} with {format_arguments(approval.get('arguments', {}))}")
        answer: bool | None = None
        while answer is None:
            line = self.read_line("approve? [y/n] ")
            if line is None:
                self.note(f"end of input: the call to {tool} is left awaiting approval")
                return False
            word = line.strip().lower()
            if word in ("y", "yes"):
                answer = True
            elif word in ("n", "no") or not self.interactive:
                answer = False
            else:
                self.note("answer y or n")
        url = approval.get("approve_url")
        path = url if isinstance(url, str) and url.startswith("/") else f"{base}/approvals/{call_id}"
        reply = self.client.call("POST", path, {"approve": answer})
        if reply.status >= 300:
            self.note(f"approval of {tool}: {problem_detail(reply.body, reply.status)} (HTTP {reply.status})")
        else:
            self.note(f"{'approved' if answer else 'declined'}: {tool}")
        self.spinner.start("waiting")
        return True

    def _print_reply(self, reply: Any) -> None:
        if not isinstance(reply, dict):
            self.say("error: the app answered without a reply")
            return
        error = reply.get("error")
        if isinstance(error, dict):
            self.say(f"error: {error.get('message', 'the turn failed')}")
            return
        self.say(str(reply.get("content") or ""))
        if self.interactive and self.stderr.isatty():
            meta = [str(reply[k]) for k in ("model",) if reply.get(k)]
            if isinstance(reply.get("latency_ms"), int):
                meta.append(f"{reply['latency_ms'] / 1000:.1f}s")
            if meta:
                self.note("\x1b[2m— " + ", ".join(meta) + "\x1b[0m")

    def history(self) -> None:
        after = 0
        while True:
            page = self.client.expect(
                "GET", f"/api/threads/{self.thread_id}/messages?after={after}&limit=200"
            )
            entries = page.get("messages") or [] if isinstance(page, dict) else []
            for entry in entries:
                self.say(format_entry(entry))
            next_after = page.get("next_after") if isinstance(page, dict) else None
            if not entries or not isinstance(next_after, int) or next_after <= after:
                return
            after = next_after

    # -- the loop --

    def run(self) -> int:
        if self.interactive:
            self.note(f"{self.client.base_url}: {COMMANDS}")
        while True:
            line = self.read_line("you> ")
            if line is None:
                return 1 if self.unanswered else 0
            text = line.strip()
            if not text:
                continue
            if text in ("/quit", "/exit"):
                return 1 if self.unanswered else 0
            if text == "/new":
                self.new_thread()
            elif text == "/history":
                self.history()
            elif text.startswith("/") and " " not in text:
                self.note(f"unknown command {text}; commands: {COMMANDS}")
            else:
                try:
                    self.send(text)
                except KeyboardInterrupt:
                    if not self.interactive:
                        raise
                    self.note("stopped waiting; /history shows the reply when it comes")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/chat", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the app's base URL (default {DEFAULT_URL})")
    parser.add_argument("--thread", help="join this thread instead of starting a new one")
    parser.add_argument("--key", help="function key, sent as x-functions-key (deployed apps)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for one reply (default 600)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - line editing and history for input()
    try:
        client = Client(normalize_url(args.url), args.key)
        chat = Chat(
            client,
            stdin=sys.stdin,
            stdout=sys.stdout,
            stderr=sys.stderr,
            interactive=interactive,
            reply_timeout=args.timeout,
        )
        if args.thread:
            chat.join_thread(args.thread)
        else:
            chat.new_thread()
        client.retry = True
        return chat.run()
    except ChatError as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
