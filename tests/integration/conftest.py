"""Fixtures for integration tests: a scripted fake model and devhost serving the real app."""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.integration.harness import STARTED_LOGS, Api, DevhostProcess
from tests.integration.in_process import new_devhost

BACKENDS = ["memory", "sqlite"]


def model_env(fake: FakeModelServer) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_MODEL": "fake-model",
        "OPENAI_API_KEY": "test-key-not-secret",
        "MODEL_TIMEOUT_SECONDS": "5",
        "MODEL_MAX_ATTEMPTS": "4",
        "MODEL_RETRY_MAX_SECONDS": "20",
        "SYSTEM_PROMPT": "You are a test assistant.",
        # the per-caller limits have tests of their own; elsewhere they would only get in the way
        "RATE_LIMIT_MESSAGES_PER_MINUTE": "0",
        "RATE_LIMIT_THREADS_PER_PRINCIPAL": "0",
        "RATE_LIMIT_TOKENS_PER_DAY": "0",
        "AZURE_OPENAI_ENDPOINT": "",
        "AZURE_OPENAI_DEPLOYMENT": "",
        "MODEL_PROVIDER": "",
    }


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report ends with the tail of each devhost log written while it ran:
    the host's side of a 500 or a timeout, which is gone with the test's temporary folder."""
    report = yield
    if report.failed:
        for path in STARTED_LOGS:
            if path.exists() and path.stat().st_mtime >= call.start - 1:
                tail = path.read_text(errors="replace").splitlines()[-80:]
                report.sections.append((f"devhost log {path.name} (last 80 lines)", "\n".join(tail)))
    return report


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


@pytest.fixture
def model(fake_model: FakeModelServer) -> Iterator[FakeModelServer]:
    """The shared fake model, with an empty script and request log for this test."""
    fake_model.reset()
    yield fake_model
    fake_model.reset()


@pytest.fixture(scope="module", params=BACKENDS)
def devhost(
    request: pytest.FixtureRequest, fake_model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevhostProcess]:
    backend = str(request.param)
    folder = tmp_path_factory.mktemp(f"devhost-{backend}")
    host = new_devhost(
        folder / "devhost.log",
        backend=backend,
        db_path=folder / "taskhub.db" if backend == "sqlite" else None,
        env=model_env(fake_model),
    ).start()
    yield host
    code = host.stop()
    assert code == 0, host.log()


@pytest.fixture
def api(devhost: DevhostProcess) -> Api:
    return devhost.api


@pytest.fixture
def thread_id(api: Api) -> str:
    """A new thread, created through the API, with an id unique to this test."""
    thread = f"t-{uuid.uuid4().hex[:12]}"
    reply = api.post("/api/threads", {"thread_id": thread})
    assert reply.status == 201, reply.body
    return thread


def unique(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
