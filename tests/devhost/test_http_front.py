"""devhost's HTTP front end (Starlette): problems for its own errors, the Functions body limit,
and the app's route templates, through a real devhost process."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.devhost.conftest import sample_host
from tests.integration.harness import Api, DevhostProcess


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    host = sample_host(tmp_path_factory.mktemp("front") / "devhost.log").start()
    yield host
    assert host.stop() == 0, host.log()


@pytest.fixture
def api(sample: DevhostProcess) -> Api:
    return sample.api


def test_wrong_method_on_an_app_route_is_405_with_allow(api: Api) -> None:
    reply = api.request("PUT", "/v1/echo/a/1", raw=b"x")
    assert reply.status == 405
    assert reply.content_type.startswith("application/problem+json")
    assert reply.headers["allow"] == "GET, POST"
    assert "PUT" in reply.json["detail"]


def test_routes_match_case_insensitively_with_constraints(api: Api) -> None:
    assert api.get("/v1/ECHO/ada/7").json["count"] == 7
    assert api.get("/v1/echo/ada/seven").status == 404
    outside = api.get("/elsewhere")
    assert outside.status == 404 and "/v1/" in outside.json["detail"]


def test_a_body_over_the_functions_limit_is_refused_before_it_is_read(sample: DevhostProcess) -> None:
    declared = 100 * 1024 * 1024 + 1
    with socket.create_connection(("127.0.0.1", sample.port), timeout=10) as conn:
        conn.sendall(
            b"POST /v1/echo/a/1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer
    assert b"application/problem+json" in head
    assert "exceeds" in json.loads(body)["detail"]
    assert sample.api.get("/v1/setting").status == 200  # and the host keeps serving
