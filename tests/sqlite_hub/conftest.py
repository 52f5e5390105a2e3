"""Fixtures: one backend (the in-memory reference or the SQLite hub) with a client and a worker."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def running_backend(kind: str, directory: pathlib.Path) -> Iterator[Env]:
    """Starts one backend (the reference or the SQLite hub) with a started worker and a client."""
    port = free_port()
    sidecar: SqliteSidecar | None = None
    backend: Any = None
    if kind == "memory":
        backend = create_test_backend(port=port)
        address = f"127.0.0.1:{port}"
    else:
        sidecar = SqliteSidecar(directory / "hub" / "taskhub.db", port=port)
        sidecar.start()
        address = sidecar.address
    worker: Any = TaskHubGrpcWorker(host_address=address)
    workflows.register(worker)
    worker.start()
    client = TaskHubGrpcClient(host_address=address)
    try:
        yield Env(kind, address, client, worker, sidecar)
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


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def shared_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One backend per test module and kind (worker start/stop costs about a second)."""
    with running_backend(request.param, tmp_path_factory.mktemp(request.param)) as env:
        yield env


@pytest.fixture
def env(shared_env: Env) -> Iterator[Env]:
    """The module's backend; tests use unique instance ids. The SQLite file is checked after each test."""
    yield shared_env
    if shared_env.sidecar is not None:
        assert shared_env.sidecar.integrity_check() == "ok"


@pytest.fixture(params=["memory", "sqlite"])
def isolated_env(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Env]:
    """A fresh backend, for tests whose assertions cover every instance or entity in the hub."""
    with running_backend(request.param, tmp_path) as env:
        yield env
