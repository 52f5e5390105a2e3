"""azure.yaml's hooks and the scripts they run, offline: the preprovision checks against a fake
`azd` whose token says who signed in, and the hook runner's fallback without Python."""

from __future__ import annotations

import base64
import importlib.machinery
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.infra.bicep import ROOT
from tests.infra.test_project_files import parse_simple_yaml

SCRIPTS = ROOT / "scripts"
PREPROVISION = SCRIPTS / "preprovision"
CLIENT_ID = "66666666-7777-8888-9999-000000000000"


def load_script(name: str) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader(f"script_{name}", str(SCRIPTS / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_azure_yaml_wires_the_hooks() -> None:
    hooks = parse_simple_yaml((ROOT / "azure.yaml").read_text())["hooks"]
    assert hooks["preprovision"]["posix"] == {"shell": "sh", "run": "sh scripts/azd-hook preprovision"}
    assert hooks["preprovision"]["windows"] == {"shell": "pwsh", "run": "python scripts/preprovision"}
    assert hooks["postdeploy"]["posix"] == {"shell": "sh", "run": "sh scripts/azd-hook smoke --azd"}
    assert hooks["postdeploy"]["windows"] == {"shell": "pwsh", "run": "python scripts/smoke --azd"}
    assert sorted(hooks) == ["postdeploy", "preprovision"]
    for name in ("azd-hook", "preprovision", "smoke"):
        mode = (SCRIPTS / name).stat().st_mode
        assert mode & stat.S_IXUSR, f"scripts/{name} is not executable"


def unsigned_token(**claims: Any) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


SERVICE_PRINCIPAL = {"oid": "sp-oid", "idtyp": "app", "roles": [], "appid": "app-id"}
USER = {"oid": "user-oid", "idtyp": "user", "scp": "user_impersonation", "upn": "someone@example.com"}


@pytest.fixture
def fake_azd(tmp_path: Path) -> Path:
    """A directory holding an `azd` that answers `auth token` with $FAKE_AZD_TOKEN."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "azd"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "open(os.environ['FAKE_AZD_LOG'], 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "if os.environ.get('FAKE_AZD_FAIL'):\n"
        "    print('ERROR: not logged in, run `azd auth login` to login', file=sys.stderr)\n"
        "    sys.exit(1)\n"
        "print(json.dumps({'token': os.environ['FAKE_AZD_TOKEN'], 'expiresOn': '2026-12-02T20:00:00Z'}))\n"
    )
    script.chmod(0o755)
    return folder


def run_preprovision(
    fake_azd: Path | None, claims: dict[str, Any] | None, python: str = sys.executable, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "FAKE_AZD")) and k != "PATH"}
    path = os.environ.get("PATH", "")
    if fake_azd is not None:
        clean["PATH"] = f"{fake_azd}{os.pathsep}{path}"
        clean["FAKE_AZD_LOG"] = str(fake_azd / "calls.log")
        clean["FAKE_AZD_TOKEN"] = unsigned_token(**(claims or {}))
    else:
        clean["PATH"] = os.pathsep.join(p for p in path.split(os.pathsep) if not (Path(p) / "azd").exists())
    return subprocess.run(
        [python, str(PREPROVISION)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        check=False,
    )


def test_service_principal_without_principal_type_fails_with_the_fix(fake_azd: Path) -> None:
    done = run_preprovision(fake_azd, SERVICE_PRINCIPAL)
    assert done.returncode == 1, done.stdout
    assert "FAIL  principal type: azd is signed in as a service principal" in done.stdout
    assert "UnmatchedPrincipalType" in done.stdout
    assert "fix: azd env set AZURE_PRINCIPAL_TYPE ServicePrincipal" in done.stdout
    assert "nothing was deployed" in done.stdout


def test_service_principal_with_principal_type_passes(fake_azd: Path) -> None:
    done = run_preprovision(
        fake_azd, SERVICE_PRINCIPAL, AZURE_PRINCIPAL_TYPE="ServicePrincipal", AZURE_TENANT_ID="tenant-1"
    )
    assert done.returncode == 0, done.stdout
    assert "ok    principal type: AZURE_PRINCIPAL_TYPE=ServicePrincipal matches" in done.stdout
    calls = (fake_azd / "calls.log").read_text()
    assert "auth token --output json --scope https://management.azure.com//.default" in calls
    assert "--tenant-id tenant-1" in calls


def test_user_passes_without_setting_anything(fake_azd: Path) -> None:
    done = run_preprovision(fake_azd, USER)
    assert done.returncode == 0, done.stdout
    assert "AZURE_PRINCIPAL_TYPE=User matches azd's sign-in" in done.stdout
    assert "auth off" in done.stdout
    assert "model gpt-5.4-mini 2026-03-17" in done.stdout


@pytest.mark.skipif(shutil.which("python3.11") is None, reason="no python3.11 here")
def test_runs_on_python_311(fake_azd: Path) -> None:
    done = run_preprovision(fake_azd, SERVICE_PRINCIPAL, python=shutil.which("python3.11") or "python3.11")
    assert done.returncode == 1
    assert "fix: azd env set AZURE_PRINCIPAL_TYPE ServicePrincipal" in done.stdout


def test_user_with_service_principal_type_fails(fake_azd: Path) -> None:
    done = run_preprovision(fake_azd, USER, AZURE_PRINCIPAL_TYPE="ServicePrincipal")
    assert done.returncode == 1
    assert "signed in as a user" in done.stdout
    assert "fix: azd env set AZURE_PRINCIPAL_TYPE User" in done.stdout


def test_token_without_idtyp_is_read_from_its_scopes(fake_azd: Path) -> None:
    assert run_preprovision(fake_azd, {"oid": "x", "scp": "user_impersonation"}).returncode == 0
    app_only = run_preprovision(fake_azd, {"oid": "x", "roles": []})
    assert "fix: azd env set AZURE_PRINCIPAL_TYPE ServicePrincipal" in app_only.stdout


def test_unknown_sign_in_is_not_an_error(fake_azd: Path) -> None:
    failed_login = run_preprovision(fake_azd, USER, FAKE_AZD_FAIL="1")
    assert failed_login.returncode == 0, failed_login.stdout
    assert "not checked: `azd auth token` failed" in failed_login.stdout
    no_azd = run_preprovision(None, None)
    assert no_azd.returncode == 0, no_azd.stdout
    assert "not checked: azd is not on PATH" in no_azd.stdout


def test_group_and_bad_values(fake_azd: Path) -> None:
    group = run_preprovision(fake_azd, SERVICE_PRINCIPAL, AZURE_PRINCIPAL_TYPE="Group")
    assert group.returncode == 0
    assert "Group (set by you; not checked)" in group.stdout
    bad = run_preprovision(fake_azd, USER, AZURE_PRINCIPAL_TYPE="Robot")
    assert bad.returncode == 1
    assert "'Robot' is not one of User, Group, ServicePrincipal" in bad.stdout


def test_auth_needs_a_client_id(fake_azd: Path) -> None:
    missing = run_preprovision(fake_azd, USER, AZURE_ENABLE_AUTH="true")
    assert missing.returncode == 1
    assert "AZURE_AUTH_CLIENT_ID is unset" in missing.stdout
    assert "fix: azd env set AZURE_AUTH_CLIENT_ID <application (client) id>" in missing.stdout
    wrong = run_preprovision(fake_azd, USER, AZURE_ENABLE_AUTH="true", AZURE_AUTH_CLIENT_ID="api://x")
    assert wrong.returncode == 1
    fine = run_preprovision(fake_azd, USER, AZURE_ENABLE_AUTH="true", AZURE_AUTH_CLIENT_ID=CLIENT_ID)
    assert fine.returncode == 0, fine.stdout
    assert f"auth on: the app accepts Entra ID tokens for api://{CLIENT_ID}" in fine.stdout


def test_refused_model_fails_with_the_fix(fake_azd: Path) -> None:
    done = run_preprovision(
        fake_azd, USER, AZURE_OPENAI_MODEL="gpt-4o-mini", AZURE_OPENAI_MODEL_VERSION="2024-07-18"
    )
    assert done.returncode == 1
    assert "gpt-4o-mini 2024-07-18 is Deprecated" in done.stdout
    assert "azd env set AZURE_OPENAI_MODEL gpt-5.4-mini" in done.stdout


def test_every_failure_is_reported_at_once(fake_azd: Path) -> None:
    done = run_preprovision(
        fake_azd,
        SERVICE_PRINCIPAL,
        AZURE_ENABLE_AUTH="true",
        AZURE_OPENAI_MODEL="gpt-4.1-mini",
        AZURE_OPENAI_MODEL_VERSION="2025-04-14",
    )
    assert done.returncode == 1
    assert done.stdout.count("FAIL  ") == 3
    assert "checks FAILED (3)" in done.stdout


def test_the_token_is_never_printed(fake_azd: Path) -> None:
    done = run_preprovision(fake_azd, SERVICE_PRINCIPAL)
    token = unsigned_token(**SERVICE_PRINCIPAL)
    for part in token.split("."):
        assert part not in done.stdout + done.stderr


def test_refused_models_and_default_match_the_templates() -> None:
    script = load_script("preprovision")
    text = (ROOT / "infra" / "main.bicep").read_text()
    model, version = script.DEFAULT_MODEL
    assert f"param chatModelName string = '{model}'" in text
    assert f"param chatModelVersion string = '{version}'" in text
    assert (model, version) not in script.REFUSED_MODELS
    assert ("gpt-4o-mini", "2024-07-18") in script.REFUSED_MODELS
    assert ("gpt-4.1-mini", "2025-04-14") in script.REFUSED_MODELS


def test_hook_runner_uses_python(tmp_path: Path) -> None:
    done = subprocess.run(
        ["sh", str(SCRIPTS / "azd-hook"), "smoke", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: scripts/smoke" in done.stdout


def test_hook_runner_without_python_warns_and_lets_azd_go_on(tmp_path: Path) -> None:
    # A copy of the runner in a tree without .venv, and a PATH with no python on it.
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPTS / "azd-hook", tmp_path / "scripts" / "azd-hook")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname",):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    shell = shutil.which("sh")
    assert shell is not None
    done = subprocess.run(
        [shell, str(tmp_path / "scripts" / "azd-hook"), "preprovision"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(bin_dir)},
        check=False,
    )
    assert done.returncode == 0
    assert "no Python 3.11 or newer found, so scripts/preprovision did not run" in done.stderr
