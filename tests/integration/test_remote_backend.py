"""devhost driving the app from a backend it does not own: the SQLite sidecar in its own
process, reached by host:port and by a DTS-style connection string (through devhost's
loopback proxy, which sets the task hub header the way the Durable Task Scheduler needs)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.harness import REPO, DevhostProcess, free_port, wait_until


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "sidecar.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devhost.sqlite_hub",
            "--db",
            str(tmp_path / "remote.db"),
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    wait_until(lambda: "LISTENING" in (tmp_path / "sidecar.log").read_text(), timeout=20, what="sidecar")
    yield f"127.0.0.1:{port}"
    process.terminate()
    assert process.wait(20) == 0


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("{address}", id="host-port"),
        pytest.param(
            "Endpoint=http://{address};TaskHub=localhub;Authentication=None", id="connection-string"
        ),
    ],
)
def test_a_conversation_runs_on_an_external_sidecar(
    backend: str, sidecar: str, tmp_path: Path, model: FakeModelServer
) -> None:
    host = DevhostProcess(
        tmp_path / "devhost.log", backend=backend.format(address=sidecar), env=model_env(model)
    )
    host.start()
    try:
        assert "external backend" in host.log()
        thread = unique("remote")
        assert host.api.post("/api/threads", {"thread_id": thread}).status == 201
        reply = host.api.post(f"/api/threads/{thread}/messages?wait=30", {"content": "over there"})
        assert reply.status == 200, reply.body
        assert reply.json["reply"]["content"] == "echo: over there"
    finally:
        assert host.stop() == 0, host.log()

    # The state lives in the sidecar: a second devhost sees the same thread.
    again = DevhostProcess(
        tmp_path / "devhost2.log", backend=backend.format(address=sidecar), env=model_env(model)
    )
    again.start()
    try:
        assert again.api.get(f"/api/threads/{thread}").json["turn"] == 1
    finally:
        assert again.stop() == 0


def test_an_unreachable_backend_gives_503_not_a_traceback(tmp_path: Path, model: FakeModelServer) -> None:
    host = DevhostProcess(tmp_path / "devhost.log", backend=f"127.0.0.1:{free_port()}", env=model_env(model))
    host.start()
    try:
        reply = host.api.post("/api/threads", {"thread_id": unique("x")})
        assert reply.status == 503
        assert reply.json["code"] == "backend_unavailable"
    finally:
        assert host.stop() == 0, host.log()
