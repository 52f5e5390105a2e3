"""Fixtures for the protocol tests: a SQLite hub, and a raw stub."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2_grpc as stubs

from devhost.sqlite_hub import SqliteSidecar


@pytest.fixture
def sidecar(tmp_path: pathlib.Path) -> Iterator[SqliteSidecar]:
    """A hub with the default 300 s leases, so a slow machine cannot expire a lease between
    a work item arriving and the test completing it; expiry tests shorten it themselves."""
    hub = SqliteSidecar(tmp_path / "taskhub.db")
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
        check = SqliteSidecar(hub.db_path)
        check.storage.open()
        assert check.integrity_check() == "ok"
        check.storage.close()


@pytest.fixture
def stub(sidecar: SqliteSidecar) -> Iterator[Any]:
    with grpc.insecure_channel(sidecar.address) as channel:
        yield stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
