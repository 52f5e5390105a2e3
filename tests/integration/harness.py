"""Test harness: run devhost as a real process and talk to it over real HTTP.

`DevhostProcess` starts `python -m devhost` on a free loopback port with the app from this
repository, waits until /api/health answers, and can stop it politely (SIGINT) or kill it
(SIGKILL). `Api` is a tiny JSON-over-HTTP client built on urllib.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def assert_problem(reply: Reply, status: int, fragment: str) -> None:
    """`reply` is a JSON problem with this status whose detail says `fragment`, no stack trace."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.content_type.startswith("application/problem+json"), reply.content_type
    body = reply.json
    assert body["status"] == status and fragment in body["detail"], body
    assert b"Traceback" not in reply.body


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        timeout: float = 150.0,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Reply(
                    response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
                )
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, body, **kwargs)

    def delete(self, path: str) -> Reply:
        return self.request("DELETE", path)


class PortTakenError(RuntimeError):
    """devhost could not bind its port: another process holds it."""


#: every devhost log written in this test session, newest last (see conftest's failure report)
STARTED_LOGS: list[Path] = []


class DevhostProcess:
    def __init__(
        self,
        log_path: Path,
        *,
        backend: str = "memory",
        db_path: Path | None = None,
        env: dict[str, str] | None = None,
        app_dir: Path = REPO,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        #: a port picked here may be taken by another process before devhost binds it
        self._port_is_ours = port is None
        self.log_path = log_path
        self.backend = backend
        self.db_path = db_path
        self.app_dir = app_dir
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []
        self.api = Api(f"http://127.0.0.1:{self.port}")

    def start(self, timeout: float = 30.0) -> DevhostProcess:
        """Start devhost and wait until it is ready. A port this harness picked that another
        process took meanwhile (free_port cannot reserve it) is replaced by a new one."""
        for _ in range(5):
            try:
                return self._start(timeout)
            except PortTakenError:
                if not self._port_is_ours:
                    raise
                self.port = free_port()
                self.api = Api(f"http://127.0.0.1:{self.port}")
        raise RuntimeError(f"no free port for devhost after 5 tries:\n{self.log()}")

    def _start(self, timeout: float) -> DevhostProcess:
        command = [sys.executable, "-m", "devhost", "--app", str(self.app_dir), "--port", str(self.port)]
        command += ["--backend", self.backend]
        if self.db_path is not None:
            command += ["--db", str(self.db_path)]
        command += self.extra_args
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        if self.log_path not in STARTED_LOGS:
            STARTED_LOGS.append(self.log_path)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "is already in use" in self.log()[offset:]:
                    raise PortTakenError(self.port)
                raise RuntimeError(f"devhost exited with {self.process.returncode}:\n{self.log()}")
            if "devhost ready on" in self.log()[offset:]:
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"devhost did not become healthy in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int:
        """Ctrl-C, then wait; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RuntimeError(f"devhost ignored SIGINT for {timeout}s:\n{self.log()}") from None
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_until(check: Any, timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
