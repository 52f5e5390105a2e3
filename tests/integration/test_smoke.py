"""scripts/smoke against devhost, run as a subprocess the way the azd postdeploy hook runs it:
a passing run, a run whose model refuses every request (400), an app that is not there,
auth checks against an app that has auth off, and with AUTH_MODE=entra and a real token."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.model_server import FakeModelServer, error
from tests.integration.conftest import model_env
from tests.integration.harness import REPO, DevhostProcess, free_port
from tests.integration.test_entra_auth import EntraHost, entra_host  # noqa: F401
from tests.unit.auth.support import CLIENT_ID, TENANT, token

SMOKE = REPO / "scripts" / "smoke"


# The script promises to run on any python3 >= 3.11, not only the repo's 3.13.
PYTHON_311 = shutil.which("python3.11")


def smoke(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180, python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SMOKE_", "AZURE_", "AUTH_"))}
    return subprocess.run(
        [python, str(SMOKE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
        check=False,
    )


@pytest.fixture(scope="module")
def host(fake_model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    folder = tmp_path_factory.mktemp("smoke")
    started = DevhostProcess(folder / "devhost.log", backend="memory", env=model_env(fake_model)).start()
    yield started
    assert started.stop() == 0, started.log()


@pytest.mark.parametrize(
    "python",
    [
        sys.executable,
        pytest.param(
            PYTHON_311 or "python3.11",
            marks=pytest.mark.skipif(PYTHON_311 is None, reason="no python3.11 here"),
        ),
    ],
    ids=["repo-python", "python3.11"],
)
def test_passing_run(host: DevhostProcess, model: FakeModelServer, python: str) -> None:
    done = smoke(host.api.base_url, "--key", "local-key-not-checked", python=python)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    health" in done.stdout
    assert "ok    one turn through the model: thread " in done.stdout
    assert done.stdout.rstrip().endswith("smoke check passed")
    assert "auth checks skipped" in done.stdout
    assert "local-key-not-checked" not in done.stdout + done.stderr
    asked = [m["content"] for r in model.requests for m in r.messages if m.get("role") == "user"]
    assert any("smoke test" in str(content) for content in asked)


def test_model_refusing_requests_fails_with_the_fix(host: DevhostProcess, model: FakeModelServer) -> None:
    model.set_default(error(400, message="Unsupported value for this model", code="unsupported_value"))
    done = smoke(host.api.base_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  one turn through the model: the turn failed: model_rejected" in done.stdout
    assert "fix: Azure OpenAI rejected the request" in done.stdout
    assert "AZURE_OPENAI_API_VERSION" in done.stdout
    assert "smoke check FAILED: one turn through the model" in done.stdout


def test_app_that_is_not_there() -> None:
    done = smoke(f"http://127.0.0.1:{free_port()}", "--ready-timeout", "0")
    assert done.returncode == 1
    assert "FAIL  health:" in done.stdout
    assert "could not connect" in done.stdout
    assert "fix: Check the URL (SERVICE_API_ENDPOINT)" in done.stdout
    assert "other checks did not run" in done.stdout


def test_token_against_an_app_without_auth_fails_and_stays_secret(host: DevhostProcess) -> None:
    secret_token = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJzbW9rZSJ9.c2lnbmF0dXJlLW5vdC1yZWFs"
    done = smoke(host.api.base_url, env={"SMOKE_TOKEN": secret_token, "SMOKE_FUNCTION_KEY": "key-123456"})
    assert done.returncode == 1
    assert "FAIL  no token is refused" in done.stdout
    assert "FAIL  forged principal header is refused" in done.stdout
    assert "azd env set AZURE_ENABLE_AUTH true" in done.stdout
    assert secret_token not in done.stdout + done.stderr
    assert "key-123456" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "args",
    [[], ["ftp://example.com"], ["http://127.0.0.1:1", "--wait", "0"]],
    ids=["no-url", "scheme", "wait"],
)
def test_bad_usage(args: list[str]) -> None:
    done = smoke(*args)
    assert done.returncode == 2
    assert "usage: scripts/smoke" in done.stderr


def test_azd_mode_can_be_skipped_and_says_what_is_missing() -> None:
    skipped = smoke("--azd", env={"SMOKE_SKIP": "true"})
    assert skipped.returncode == 0
    assert "skipped" in skipped.stdout
    missing = smoke("--azd", env={"SERVICE_API_ENDPOINT": "", "FUNCTION_APP_URL": ""})
    assert missing.returncode == 1
    assert "SERVICE_API_ENDPOINT is not in the azd environment" in missing.stdout


def test_azd_mode_with_a_given_key(host: DevhostProcess, model: FakeModelServer) -> None:
    env = {"SERVICE_API_ENDPOINT": host.api.base_url, "SMOKE_FUNCTION_KEY": "k", "AUTH_ENABLED": "false"}
    done = smoke("--azd", "--ready-timeout", "10", env=env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_passing_run_with_entra_auth(entra_host: EntraHost, model: FakeModelServer) -> None:  # noqa: F811
    valid = token(entra_host.key, oid="smoke-user")
    done = smoke(entra_host.api.base_url, env={"SMOKE_TOKEN": valid})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    no token is refused: without a token: refused with 401" in done.stdout
    assert "ok    forged principal header is refused" in done.stdout
    assert "ok    one turn through the model" in done.stdout
    assert valid not in done.stdout + done.stderr


def fake_azd(folder: Path, token: str | None) -> dict[str, str]:
    """An `azd` on PATH whose `auth token` prints `token` (fails when None); returns the env."""
    folder.mkdir(exist_ok=True)
    script = folder / "azd"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "open(os.environ['FAKE_AZD_LOG'], 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "token = os.environ.get('FAKE_AZD_TOKEN')\n"
        "if not token:\n"
        "    print('ERROR: fetching token: AADSTS65001: consent required', file=sys.stderr)\n"
        "    sys.exit(1)\n"
        "print(json.dumps({'token': token, 'expiresOn': '2026-12-02T20:00:00Z'}))\n"
    )
    script.chmod(0o755)
    env = {
        "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_AZD_LOG": str(folder / "calls.log"),
    }
    if token is not None:
        env["FAKE_AZD_TOKEN"] = token
    return env


def test_azd_mode_gets_the_api_token_from_azd(
    entra_host: EntraHost,  # noqa: F811
    model: FakeModelServer,
    tmp_path: Path,
) -> None:
    client_id = CLIENT_ID
    env = {
        **fake_azd(tmp_path / "bin", token(entra_host.key, oid="azd-user")),
        "SERVICE_API_ENDPOINT": entra_host.api.base_url,
        "SMOKE_FUNCTION_KEY": "k",
        "AUTH_ENABLED": "true",
        "AZURE_AUTH_CLIENT_ID": client_id,
        "AZURE_TENANT_ID": TENANT,
    }
    done = smoke("--azd", "--ready-timeout", "10", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    no token is refused" in done.stdout
    calls = (tmp_path / "bin" / "calls.log").read_text()
    assert f"auth token --output json --scope api://{client_id}/.default --tenant-id {TENANT}" in calls


def test_azd_mode_without_consent_says_how_to_get_a_token(tmp_path: Path) -> None:
    env = {
        **fake_azd(tmp_path / "bin", None),
        "SERVICE_API_ENDPOINT": "http://127.0.0.1:1",
        "SMOKE_FUNCTION_KEY": "k",
        "AUTH_ENABLED": "true",
        "AZURE_AUTH_CLIENT_ID": CLIENT_ID,
    }
    done = smoke("--azd", env=env)
    assert done.returncode == 1
    assert f"azd could not get a token for api://{CLIENT_ID}/.default: ERROR: fetching token" in done.stdout
    assert "04b07795-8ddb-461a-bbee-02f9e1bf7b46" in done.stdout
    assert "SMOKE_TOKEN=$(az account get-access-token" in done.stdout
    assert "set SMOKE_SKIP=true to skip it" in done.stdout
