"""``SqliteSidecar``: the object devhost starts, and the process-level server around it.

Why this module exists: it binds the servicer to a gRPC server on a loopback (or given)
address, opens the database (creating directories, file and schema as needed) and owns
the lifecycle: ``start()``, ``port`` / ``address``, ``stop()``.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable
from concurrent import futures
from typing import Any, Literal

import grpc
from durabletask.internal import orchestrator_service_pb2_grpc as stubs

from devhost.grpc_limits import GRPC_OPTIONS
from devhost.sqlite_hub.faults import StorageFaultInterceptor
from devhost.sqlite_hub.hub import HEALTH_PING_SECONDS, TaskHub
from devhost.sqlite_hub.leases import DEFAULT_LEASE_SECONDS
from devhost.sqlite_hub.servicer import SqliteHubServicer
from devhost.sqlite_hub.storage import Storage

log = logging.getLogger("devhost.sqlite_hub")

# Each worker stream, WaitFor* call and long-polling Get* call holds a thread for its
# duration; threads are created lazily, so a generous ceiling costs nothing until it is
# needed. Long-polls are capped at longpoll.DEFAULT_CAPACITY (256) at once, leaving at
# least as many threads for streams and every other call.
_MAX_RPC_THREADS = 512


class SqliteSidecar:
    """A Durable Task sidecar whose whole state lives in one SQLite file."""

    def __init__(
        self,
        db_path: pathlib.Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        durability: Literal["full", "normal"] = "normal",
    ) -> None:
        self.db_path = pathlib.Path(db_path)
        self.host = host
        self.requested_port = port
        self.durability: Literal["full", "normal"] = durability
        self.port = 0
        self.address = ""
        # Tunables for tests and the benchmark; not part of the host's API.
        self.lease_seconds = DEFAULT_LEASE_SECONDS
        self.health_ping_seconds = HEALTH_PING_SECONDS
        self.storage = Storage(self.db_path, durability)
        self.hub: TaskHub | None = None
        self._server: grpc.Server | None = None

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("sidecar already started")
        self.storage.open()
        self.hub = TaskHub(self.storage, lease_seconds=self.lease_seconds)
        self.hub.health_ping_seconds = self.health_ping_seconds
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=_MAX_RPC_THREADS, thread_name_prefix="taskhub"),
            options=list(GRPC_OPTIONS),
            interceptors=[StorageFaultInterceptor()],
        )
        add_servicer: Callable[[Any, grpc.Server], None] = stubs.add_TaskHubSidecarServiceServicer_to_server
        add_servicer(SqliteHubServicer(self.hub), server)
        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            bound = server.add_insecure_port(f"{host}:{self.requested_port}")
        except RuntimeError:
            bound = 0
        if bound == 0:
            self.storage.close()
            self.hub = None
            raise OSError(f"could not bind {self.host}:{self.requested_port}")
        server.start()
        self._server = server
        self.port = bound
        self.address = f"{host}:{bound}"
        log.info(
            "SQLite task hub %s listening on %s (durability=%s)", self.db_path, self.address, self.durability
        )

    def stop(self, grace: float | None = None) -> None:
        server, self._server = self._server, None
        if self.hub is not None:
            self.hub.signals.close()
            self.hub.long_poll.close()
        if server is not None:
            server.stop(grace).wait()
        self.storage.close()
        log.info("SQLite task hub %s stopped", self.db_path)

    @property
    def commits(self) -> int:
        """Write transactions committed since start (for the benchmark)."""
        return self.storage.commits

    def integrity_check(self) -> str:
        return self.storage.integrity_check()
