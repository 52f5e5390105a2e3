"""devhost as a Functions host: configuration, routing, bindings, concurrency, resilience, shutdown."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import harness
from tests.integration.harness import Api, DevhostProcess, wait_until

SAMPLE = Path(__file__).parent / "sample_app"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    folder = tmp_path_factory.mktemp("sample")
    host = DevhostProcess(
        folder / "devhost.log", backend="memory", app_dir=SAMPLE, env={"SAMPLE_SETTING": ""}
    )
    host.env.pop("SAMPLE_SETTING")
    host.start()
    yield host
    assert host.stop() == 0, host.log()


@pytest.fixture
def api(sample: DevhostProcess) -> Api:
    return sample.api


def test_startup_log_lists_every_function_with_trigger_and_route(sample: DevhostProcess) -> None:
    log = sample.log()
    assert f"echo: [GET,POST] http://127.0.0.1:{sample.port}/v1/echo/{{name}}/{{count:int}}" in log
    assert "fan_out: orchestrationTrigger" in log
    assert "meet: activityTrigger" in log
    assert "devhost ready on" in log


def test_host_json_route_prefix_and_local_settings(api: Api) -> None:
    assert api.get("/v1/setting").body == b"from-local-settings"
    assert api.get("/api/setting").status == 404


def test_http_request_and_response_are_passed_through(api: Api) -> None:
    reply = api.request("POST", "/v1/echo/ada/3?q=yes", raw=b"payload")
    assert reply.status == 200
    assert reply.json == {
        "method": "POST",
        "name": "ada",
        "count": 3,
        "q": "yes",
        "header": None,
        "body": "payload",
    }
    assert reply.headers["x-out"] == "1"
    assert reply.content_type.startswith("application/json")
    assert api.get("/v1/echo/ada/notanumber").status == 404


def test_a_crashing_function_gets_a_500_problem_and_the_host_keeps_serving(
    api: Api, sample: DevhostProcess
) -> None:
    reply = api.get("/v1/crash")
    assert reply.status == 500
    assert reply.content_type.startswith("application/problem+json")
    assert "sample crash" not in reply.body.decode()
    assert "RuntimeError: sample crash" in sample.log()  # the details go to the log
    assert api.get("/v1/setting").status == 200


def test_orchestration_with_concurrent_sync_async_and_failing_activities(api: Api) -> None:
    started = api.post("/v1/start/fan_out")
    assert started.status == 202
    links = started.json
    assert links["statusQueryGetUri"].startswith(f"{api.base_url}/runtime/webhooks/durabletask/instances/")
    status_path = links["statusQueryGetUri"][len(api.base_url) :]
    done = wait_until(
        lambda: (r := api.get(status_path)).status == 200 and r.json, timeout=30, what="fan_out to complete"
    )
    assert done["runtimeStatus"] == "Completed", done
    assert done["output"]["met"] == [0, 1, 2]  # the barrier proves the three ran at once
    assert done["output"]["double"] == 42
    assert "activity exploded" in done["output"]["failure"]


def test_management_raise_event_terminate_and_purge(api: Api) -> None:
    first = api.post("/v1/start/waits_forever").json
    base = first["statusQueryGetUri"][len(api.base_url) :].split("?")[0]
    wait_until(lambda: api.get(base).json["runtimeStatus"] == "Running", what="running")
    assert api.post(f"{base}/raiseEvent/go", {"answer": 42}).status == 202
    completed = wait_until(lambda: (r := api.get(base)).status == 200 and r.json, what="completion")
    assert completed["output"] == {"answer": 42}

    second = api.post("/v1/start/waits_forever").json
    other = second["statusQueryGetUri"][len(api.base_url) :].split("?")[0]
    wait_until(lambda: api.get(other).json["runtimeStatus"] == "Running", what="running")
    assert api.post(f"{other}/terminate?reason=test").status == 202
    terminated = wait_until(lambda: (r := api.get(other)).status == 200 and r.json, what="termination")
    assert terminated["runtimeStatus"] == "Terminated"
    purged = api.delete(other)
    assert purged.status == 200 and purged.json["instancesDeleted"] == 1
    assert api.get(other).status == 404
    assert api.post(f"{other}/raiseEvent/go", {}).status == 404


def test_bad_app_folder_fails_with_a_clear_message(tmp_path: Path) -> None:
    host = DevhostProcess(tmp_path / "log.txt", app_dir=tmp_path)
    with pytest.raises(RuntimeError, match=r"function_app.py not found"):
        host.start(timeout=20)
    assert host.process is not None and host.process.returncode == 2
    assert "Traceback" not in host.log()


def test_sigterm_also_shuts_down_cleanly(tmp_path: Path) -> None:
    host = DevhostProcess(tmp_path / "log.txt", backend="memory", app_dir=SAMPLE).start()
    assert host.process is not None
    host.process.send_signal(signal.SIGTERM)
    assert host.process.wait(20) == 0
    assert "devhost stopped" in host.log()
    assert "Traceback" not in host.log()


def test_the_harness_moves_to_another_port_when_its_pick_was_taken(
    sample: DevhostProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_port cannot reserve a port: with two suites at once, another process can bind it
    first. The harness then starts devhost on a new port instead of failing the test."""
    picks = iter([sample.port, harness.free_port()])  # the first pick is taken
    monkeypatch.setattr(harness, "free_port", lambda: next(picks))
    host = DevhostProcess(tmp_path / "log.txt", backend="memory", app_dir=SAMPLE).start(timeout=20)
    try:
        assert "already in use" in host.log()
        assert host.port != sample.port
        assert host.api.get("/v1/setting").status == 200
    finally:
        assert host.stop() == 0


def test_port_in_use_is_reported(sample: DevhostProcess, tmp_path: Path) -> None:
    clash = DevhostProcess(tmp_path / "log.txt", backend="memory", app_dir=SAMPLE, port=sample.port)
    with pytest.raises(RuntimeError):
        clash.start(timeout=20)
    assert "already in use" in clash.log()
    assert json.dumps(sample.api.get("/v1/setting").status) == "200"
