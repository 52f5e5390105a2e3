"""Fixtures: one backend (the in-memory reference or the SQLite hub) with a client and a worker."""

from __future__ import annotations

import logging
import pathlib
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from durabletask.client import TaskHubGrpcClient
from durabletask.testing import create_test_backend
from durabletask.worker import TaskHubGrpcWorker

from devhost.sqlite_hub import SqliteSidecar
from tests.sqlite_hub import workflows

logging.getLogger("durabletask-worker").setLevel(logging.WARNING)
logging.getLogger("durabletask-client").setLevel(logging.WARNING)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    kind: str
    address: str
    client: TaskHubGrpcClient
    worker: Any  # TaskHubGrpcWorker (its start/stop are unannotated upstream)
    sidecar: SqliteSidecar | None

    def iid(self, label: str = "i") -> str:
        """A unique instance id for this test."""
        return f"{label}-{uuid.uuid4().hex[:12]}"

    @property
    def is_sqlite(self) -> bool:
        return self.kind == "sqlite"


@pytest.fixture(params=["memory", "sqlite"])
def env(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Env]:
    port = free_port()
    sidecar: SqliteSidecar | None = None
    if request.param == "memory":
        backend: Any = create_test_backend(port=port)
        address = f"127.0.0.1:{port}"
    else:
        sidecar = SqliteSidecar(tmp_path / "hub" / "taskhub.db", port=port)
        sidecar.start()
        address = sidecar.address
    worker: Any = TaskHubGrpcWorker(host_address=address)
    workflows.register(worker)
    worker.start()
    client = TaskHubGrpcClient(host_address=address)
    try:
        yield Env(request.param, address, client, worker, sidecar)
    finally:
        worker.stop()
        client.close()
        if sidecar is not None:
            sidecar.stop()
            check = SqliteSidecar(sidecar.db_path)
            check.storage.open()
            try:
                assert check.integrity_check() == "ok"
            finally:
                check.storage.close()
        else:
            backend.stop()
            backend.reset()
