"""How devhost starts, fails to start, and logs: each case as a real process on loopback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devhost.conftest import SAMPLE, sample_host
from tests.integration.harness import REPO, DevhostProcess, free_port

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+: ")


def run_to_exit(args: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str]:
    command = [sys.executable, "-m", "devhost", "--app", str(SAMPLE), "--no-local-model", *args]
    done = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    host = sample_host(tmp_path_factory.mktemp("startup") / "devhost.log").start()
    yield host
    assert host.stop() == 0, host.log()


def test_a_taken_port_is_one_line_naming_the_port_and_the_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run_to_exit(["--port", str(port), "--backend", "memory"])
    assert code != 0
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert f"port {port}" in lines[0] and "--port" in lines[0] and "already in use" in lines[0]
    assert "Traceback" not in output and "never retrieved" not in output


def test_a_warmup_function_that_raises_stops_the_start_with_its_message() -> None:
    code, output = run_to_exit(
        ["--port", str(free_port()), "--backend", "memory"], env={"SAMPLE_TIMEOUT_SECONDS": "abc"}
    )
    assert code != 0
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output
    assert errors[0].endswith("devhost: SAMPLE_TIMEOUT_SECONDS='abc' is not a float; set a number."), output
    assert output.strip().splitlines()[-1] == errors[0]  # the last word is the reason
    assert "Traceback" not in output
    assert "devhost ready" not in output


def test_warmup_runs_once_before_devhost_says_ready(sample: DevhostProcess) -> None:
    log = sample.log()
    assert log.count("warmup function warmup ran") == 1
    assert log.index("warmup function warmup ran") < log.index("devhost ready on")


def test_the_startup_log_is_one_format_without_the_sdk_builtins(sample: DevhostProcess) -> None:
    log = sample.log()
    assert "BuiltIn__" not in log
    assert f"function echo: [GET,POST] http://127.0.0.1:{sample.port}/v1/echo/{{name}}/{{count:int}}" in log
    assert "function counter: entityTrigger" in log
    assert "function warmup: warmupTrigger" in log
    for line in log.splitlines():
        assert LOG_LINE.match(line), f"not in devhost's format: {line!r}"


def test_request_data_cannot_forge_log_lines(sample: DevhostProcess) -> None:
    assert sample.api.get("/v1/x%0A2026-01-01%20ERROR%20forged").status == 404
    assert sample.api.get("/v1/y%0D%E2%80%A82026-01-02%20ERROR%20forged%1B[31m?q=%0A2026-01-03").status == 404
    assert sample.api.get("/v1/crash?z=%0A2026-01-04%20ERROR%20forged").status == 500
    log = sample.log()
    for line in log.splitlines():
        assert not line.startswith("2026-01-0"), f"a forged line: {line!r}"
        assert "\u2028" not in line and "\x1b" not in line and "\r" not in line
    assert "GET /v1/x\\n2026-01-01 ERROR forged -> 404" in log
    assert "GET /v1/y\\r\\u20282026-01-02 ERROR forged\\x1b[31m?q=%0A2026-01-03 -> 404" in log
    # the crash's traceback is indented under its record: no line of it passes for a record
    crash = log[log.index("function crash crashed") :]
    assert crash.splitlines()[1].startswith("    ")


@pytest.mark.parametrize(
    ("backend", "hint"),
    [
        ("127.0.0.1:{port}", "python -m devhost.sqlite_hub --port {port}"),
        ("Endpoint=http://127.0.0.1:{port};TaskHub=hub;Authentication=None", "Scheduler emulator"),
    ],
    ids=["host-port", "connection-string"],
)
def test_an_unreachable_backend_is_named_with_what_was_tried_and_the_fix(
    backend: str, hint: str, tmp_path: Path
) -> None:
    port = free_port()
    host = sample_host(tmp_path / "devhost.log", backend=backend.format(port=port)).start()
    try:
        warning = next(line for line in host.log().splitlines() if "cannot be reached" in line)
        assert f"127.0.0.1:{port}" in warning
        assert "GetInstance call" in warning and "could not connect" in warning
        assert hint.format(port=port) in warning
        reply = host.api.get("/runtime/webhooks/durabletask/instances/some-id")
        assert reply.status == 503
        assert reply.content_type.startswith("application/problem+json")
        detail = reply.json["detail"]
        assert f"127.0.0.1:{port}" in detail and "UNAVAILABLE" in detail and hint.format(port=port) in detail
        assert host.api.get("/v1/setting").status == 200  # what needs no backend keeps working
    finally:
        assert host.stop() == 0, host.log()
    assert "Traceback" not in host.log()
