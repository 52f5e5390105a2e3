"""host.json, azure.yaml and .funcignore carry what the deployment needs."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

from tests.infra.bicep import ROOT


def test_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle.Preview",
        "version": "[4.*, 5.0.0)",
    }
    durable = host["extensions"]["durableTask"]
    assert durable["hubName"] == "%TASKHUB_NAME%"
    assert durable["storageProvider"] == {
        "type": "azureManaged",
        "connectionStringName": "DURABLE_TASK_SCHEDULER_CONNECTION_STRING",
    }
    assert host["extensions"]["http"]["routePrefix"] == "api"
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is True


def parse_simple_yaml(text: str) -> dict[str, Any]:
    """Block mappings of scalars only (all azure.yaml uses); anything else raises."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, sep, value = line.strip().partition(":")
        if not sep or key.startswith("-") or "\t" in raw:
            raise ValueError(f"azure.yaml:{number}: unsupported YAML {raw!r}")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        value = value.strip()
        if key in parent:
            raise ValueError(f"azure.yaml:{number}: duplicate key {key!r}")
        if value:
            parent[key] = value.strip("'\"")
        else:
            child: dict[str, Any] = {}
            parent[key] = child
            stack.append((indent, child))
    return root


def test_yaml_reader_handles_nesting() -> None:
    parsed = parse_simple_yaml("a: 1\nb:\n  c: x # note\n  d:\n    e: 'y'\nf: z\n")
    assert parsed == {"a": "1", "b": {"c": "x", "d": {"e": "y"}}, "f": "z"}
    with pytest.raises(ValueError, match="unsupported"):
        parse_simple_yaml("a:\n  - b\n")


def test_azure_yaml() -> None:
    spec = parse_simple_yaml((ROOT / "azure.yaml").read_text())
    assert spec["name"] == "durable-agent"
    api = spec["services"]["api"]
    assert api["project"] == "."
    assert api["language"] == "python"
    assert api["host"] == "function"
    assert list(spec["services"]) == ["api"]


def _patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "negations are not checked here"
    return patterns


def ignored(path: str, patterns: list[str]) -> bool:
    """gitignore-style match, as the Functions packagers apply .funcignore."""
    parts = path.split("/")
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pat = pattern.strip("/")
        anchored = "/" in pat
        for i in range(len(parts)):
            is_dir = i < len(parts) - 1
            if dir_only and not is_dir:
                continue
            candidate = "/".join(parts[: i + 1]) if anchored else parts[i]
            if fnmatch.fnmatchcase(candidate, pat):
                return True
    return False


@pytest.mark.parametrize(
    "path",
    [
        "devhost/server.py",
        "tests/unit/test_x.py",
        "tests/infra/bicep.py",
        "scripts/check",
        ".venv/bin/python",
        ".devhost/state.db",
        ".devhost/logs/host.log",
        "docs/deploy.md",
        "infra/main.bicep",
        "local.settings.json",
        "local.settings.example.json",
        ".git/HEAD",
        ".gitignore",
        ".ci/run",
        "agent/__pycache__/settings.cpython-313.pyc",
        ".mypy_cache/x.json",
        ".pytest_cache/v/cache",
        ".ruff_cache/x",
        ".azure/dev/.env",
    ],
)
def test_funcignore_excludes(path: str) -> None:
    assert ignored(path, _patterns())


@pytest.mark.parametrize(
    "path",
    [
        "function_app.py",
        "host.json",
        "requirements.txt",
        "agent/settings.py",
        "agent/telemetry.py",
        "orchestrations/thread.py",
        "entities/thread.py",
        "activities/model.py",
        "http_api/routes.py",
    ],
)
def test_funcignore_keeps_the_app(path: str) -> None:
    assert not ignored(path, _patterns())
