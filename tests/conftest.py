"""Suite-wide options: `--soak` (or SOAK=1) runs the fault-injection tests in their long mode."""

from __future__ import annotations

import os

import pytest

SOAK_TIMEOUT_SECONDS = 3600


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="fault-injection tests: more threads, more kills, longer runs (also SOAK=1)",
    )


def soak_mode(config: pytest.Config) -> bool:
    return bool(config.getoption("--soak")) or os.environ.get("SOAK", "") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not soak_mode(config):
        return
    for item in items:
        if item.path.name == "test_faults.py":
            item.add_marker(pytest.mark.timeout(SOAK_TIMEOUT_SECONDS))
