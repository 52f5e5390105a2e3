"""Fixtures for devhost's own tests: devhost serving the small sample app (not the product)."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.integration.harness import DevhostProcess

SAMPLE = Path(__file__).resolve().parents[1] / "integration" / "sample_app"


def sample_host(log: Path, *, backend: str = "memory", env: dict[str, str] | None = None) -> DevhostProcess:
    """devhost with the sample app, without a model (the sample app needs none)."""
    host = DevhostProcess(log, backend=backend, app_dir=SAMPLE, env=env)
    if backend == "sqlite":
        host.db_path = log.parent / "taskhub.db"
    host.extra_args.append("--no-local-model")
    return host


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
