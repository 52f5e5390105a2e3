"""Fixtures of the unit tests: a scripted fake model server on loopback and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.clock import FakeClock
from tests.fakes.model_server import FakeModelServer


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
