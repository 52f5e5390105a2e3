"""devhost reaches an https:// Durable Task endpoint through its proxy: TLS verified against
the trusted roots, and the connection string's task hub sent as the `taskhub` header on
every call, as the Durable Task Scheduler requires."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.testing import InMemoryOrchestrationBackend

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.harness import DevhostProcess


def self_signed(tmp_path: Path) -> tuple[bytes, bytes, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    roots = tmp_path / "roots.pem"
    roots.write_bytes(cert_pem)
    return cert_pem, key_pem, roots


class HeaderRecorder(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.task_hubs: set[str] = set()

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        self.task_hubs.update(v for k, v in details.invocation_metadata if k == "taskhub")
        return continuation(details)


@pytest.fixture
def tls_backend(tmp_path: Path) -> Iterator[tuple[int, Path, HeaderRecorder]]:
    cert_pem, key_pem, roots = self_signed(tmp_path)
    backend = InMemoryOrchestrationBackend()
    recorder = HeaderRecorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), interceptors=[recorder])
    stubs.add_TaskHubSidecarServiceServicer_to_server(backend, server)  # type: ignore[no-untyped-call]  # generated gRPC code
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    server.start()
    yield port, roots, recorder
    backend.stop()
    server.stop(grace=1).wait()


def test_a_conversation_over_tls_with_the_task_hub_header(
    tls_backend: tuple[int, Path, HeaderRecorder], tmp_path: Path, model: FakeModelServer
) -> None:
    port, roots, recorder = tls_backend
    connection = f"Endpoint=https://localhost:{port};TaskHub=tlshub;Authentication=None"
    env = {**model_env(model), "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(roots)}
    host = DevhostProcess(tmp_path / "devhost.log", backend=connection, env=env).start()
    try:
        thread = unique("tls")
        assert host.api.post("/api/threads", {"thread_id": thread}).status == 201
        reply = host.api.post(f"/api/threads/{thread}/messages?wait=30", {"content": "secure"})
        assert reply.status == 200, reply.body
        assert reply.json["reply"]["content"] == "echo: secure"
    finally:
        assert host.stop() == 0, host.log()
    assert recorder.task_hubs == {"tlshub"}


def test_an_untrusted_certificate_is_refused(
    tls_backend: tuple[int, Path, HeaderRecorder], tmp_path: Path, model: FakeModelServer
) -> None:
    port, _, recorder = tls_backend
    connection = f"Endpoint=https://localhost:{port};TaskHub=tlshub;Authentication=None"
    host = DevhostProcess(tmp_path / "devhost.log", backend=connection, env=model_env(model)).start()
    try:
        reply = host.api.post("/api/threads", {"thread_id": unique("tls")})
        assert reply.status == 503
    finally:
        assert host.stop() == 0, host.log()
    assert recorder.task_hubs == set()
