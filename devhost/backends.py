"""The seam between devhost and the Durable Task backend it drives work from.

A backend is anything that serves the TaskHubSidecarService gRPC protocol at an address:
the persistent SQLite task hub (default), durabletask's in-memory reference backend, or
an external sidecar (the Durable Task Scheduler emulator, or Azure DTS itself) named by a
connection string or a host:port.
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal.orchestrator_service_pb2_grpc import TaskHubSidecarServiceStub

from devhost.connection import SchedulerConnection, parse_backend_address
from devhost.grpc_proxy import SidecarProxy

PROBE_SECONDS = 5.0


class Backend(Protocol):
    """A running TaskHubSidecarService that devhost's workers and clients connect to."""

    @property
    def address(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def target(self) -> str:
        """Where the backend is, as a person would name it (not a loopback proxy's address)."""
        ...

    @property
    def hint(self) -> str:
        """What to do when the backend cannot be reached."""
        ...

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]: ...

    def channel_credentials(self) -> grpc.ChannelCredentials | None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    async def probe(self, within: float = PROBE_SECONDS) -> str | None:
        """None if the backend answers a gRPC call; else what happened, for a person."""
        ...


class _InProcessBackend:
    """A backend devhost runs itself on loopback: no TLS, no token, no task hub header."""

    @property
    def address(self) -> str:
        raise NotImplementedError

    @property
    def target(self) -> str:
        return self.address

    @property
    def hint(self) -> str:
        return "devhost runs this backend itself; its log above says why it stopped. Restart devhost."

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        return None

    async def probe(self, within: float = PROBE_SECONDS) -> str | None:
        return None  # started in this process a moment ago; start() raises if it cannot listen


@dataclass
class MemoryBackend(_InProcessBackend):
    """durabletask's in-memory reference backend, in-process; everything is lost on exit.

    Served on loopback only: the reference's own `start()` listens on every interface.
    """

    _port: int = 0
    _backend: Any = None
    _server: grpc.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def description(self) -> str:
        return f"in-memory reference backend listening on {self.address} (state is lost on exit)"

    def start(self) -> None:
        from durabletask.internal import orchestrator_service_pb2_grpc as stubs
        from durabletask.testing import InMemoryOrchestrationBackend

        self._backend = InMemoryOrchestrationBackend()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="devhost-memory"))
        stubs.add_TaskHubSidecarServiceServicer_to_server(self._backend, server)  # type: ignore[no-untyped-call]
        self._port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._backend is not None:
            self._backend.stop()  # ends its work-item streams and timers
            self._backend = None
        if self._server is not None:
            self._server.stop(grace=1).wait()
            self._server = None


@dataclass
class SqliteBackend(_InProcessBackend):
    """devhost's persistent task hub: one SQLite file, survives crashes and restarts."""

    db_path: Path
    durability: Literal["full", "normal"] = "normal"
    _hub: object | None = None

    @property
    def address(self) -> str:
        return str(getattr(self._hub, "address", ""))

    @property
    def description(self) -> str:
        # the hub has said where it listens; devhost does not say it again
        return f"SQLite task hub {self.db_path} ({self.durability} durability)"

    def start(self) -> None:
        from devhost.sqlite_hub import SqliteSidecar

        hub = SqliteSidecar(self.db_path, durability=self.durability)
        hub.start()
        self._hub = hub

    def stop(self) -> None:
        if self._hub is not None:
            self._hub.stop(grace=1)  # type: ignore[attr-defined]
            self._hub = None


@dataclass
class ExternalBackend:
    """A sidecar devhost does not own, named by host:port or by a DTS connection string.

    With a connection string, devhost forwards through a loopback proxy that adds TLS, the
    Entra ID token and the task hub header, so the app's insecure durable client binding
    reaches it exactly as it reaches the local backends.
    """

    connection: SchedulerConnection
    proxied: bool = True
    _proxy: SidecarProxy | None = field(default=None)

    @property
    def address(self) -> str:
        return self._proxy.address if self._proxy is not None else self.connection.address

    @property
    def description(self) -> str:
        via = f" via {self._proxy.address}" if self._proxy is not None else ""
        return f"external backend {self.connection.describe()}{via}"

    @property
    def target(self) -> str:
        return self.connection.describe()

    @property
    def hint(self) -> str:
        if not self.proxied:
            return (
                f"Start a Durable Task sidecar at {self.connection.address} (for example "
                f"`python -m devhost.sqlite_hub --port {self.connection.address.rpartition(':')[2]}`), "
                "or run devhost with --backend sqlite."
            )
        if not self.connection.secure:
            return (
                f"Start the Durable Task Scheduler emulator at {self.connection.address} (for example "
                "`docker run -p 8080:8080 mcr.microsoft.com/dts/dts-emulator:latest`), check Endpoint= in "
                "the connection string, or run devhost with --backend sqlite."
            )
        return (
            "Check Endpoint= and TaskHub= in the connection string, your network, and that your "
            "sign-in (az login) has the Durable Task Data Contributor role on the scheduler; or run "
            "devhost with --backend sqlite."
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return () if self._proxy is not None else self.connection.metadata()

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        return None if self._proxy is not None else self.connection.channel_credentials()

    def start(self) -> None:
        if self.proxied:
            proxy = SidecarProxy(
                self.connection.address,
                credentials=self.connection.channel_credentials(),
                metadata=self.connection.metadata(),
            )
            proxy.start()
            self._proxy = proxy

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None

    async def probe(self, within: float = PROBE_SECONDS) -> str | None:
        """One GetInstance call straight to the endpoint (not through the proxy), with the
        same TLS, token and task hub header devhost uses, so the answer names the real cause."""
        connection = self.connection
        credentials = connection.channel_credentials()
        if credentials is None:
            channel = grpc.aio.insecure_channel(connection.address)
        else:
            channel = grpc.aio.secure_channel(connection.address, credentials)
        stub = TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
        tried = f"a GetInstance call to {connection.address} ({'TLS' if connection.secure else 'plain gRPC'})"
        try:
            await stub.GetInstance(
                pb.GetInstanceRequest(instanceId="devhost-startup-probe"),
                timeout=within,
                metadata=connection.metadata(),
            )
        except grpc.aio.AioRpcError as error:
            return _probe_failure(tried, error, within)
        finally:
            await channel.close()
        return None


def _probe_failure(tried: str, error: grpc.aio.AioRpcError, timeout: float) -> str:
    code = error.code()
    details = (error.details() or "").strip()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{tried} got no answer within {timeout:g} s"
    if code == grpc.StatusCode.UNAVAILABLE and ("handshake" in details.lower() or "CERTIFICATE" in details):
        return f"{tried} failed its TLS handshake: the server's certificate is not trusted here ({details})"
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"{tried} could not connect ({details or code.name})"
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return f"{tried} was refused: {code.name} ({details})"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"{tried} reached a server that does not speak the Durable Task sidecar protocol"
    return f"{tried} failed: {code.name} ({details})"


def make_backend(spec: str, *, db_path: Path, durability: Literal["full", "normal"]) -> Backend:
    """`sqlite`, `memory`, `host:port`, or a DTS connection string (`Endpoint=...;TaskHub=...`)."""
    if spec == "sqlite":
        return SqliteBackend(db_path=db_path, durability=durability)
    if spec == "memory":
        return MemoryBackend()
    connection = parse_backend_address(spec)
    # A bare host:port is used as it is; a connection string goes through the proxy.
    return ExternalBackend(connection, proxied="=" in spec)
