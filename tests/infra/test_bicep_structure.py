"""The Bicep parses, its module calls line up with the modules, and azd's parameter file
and outputs line up with main.bicep. Parsed with tree-sitter-bicep: no Azure, no Bicep CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, MAIN, ROOT, Module, bicep_files, load, parse, problems

BICEP_FILES = bicep_files()
MODULE_CALLS = [
    pytest.param(path, module, id=f"{path.relative_to(INFRA)}:{module.symbol}")
    for path in BICEP_FILES
    for module in load(path).modules
]


def test_expected_files_exist() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in BICEP_FILES}
    for expected in (
        "main.bicep",
        "app/identity.bicep",
        "app/storage.bicep",
        "app/monitoring.bicep",
        "app/dts.bicep",
        "app/openai.bicep",
        "app/function-app.bicep",
    ):
        assert expected in names
    # App Service Authentication was replaced by token validation in the app (AUTH_MODE=entra).
    assert "app/auth.bicep" not in names
    assert MAIN.read_text().count("targetScope = 'subscription'") == 1


def test_parser_reports_broken_bicep() -> None:
    # The check below is only worth something if the grammar flags bad syntax.
    assert problems(parse(b"param x string = 'a'\n").root_node) == []
    assert problems(parse(b"module m 'x.bicep' = {\n  params: {\n    a: \n  }\n}\n").root_node)
    assert problems(parse(b"var a = {\n  b: 'c\n}\n").root_node)


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_parses_without_errors(path: Path) -> None:
    assert problems(load(path).tree.root_node) == []


def test_every_module_file_is_used() -> None:
    used = {(path.parent / m.path).resolve() for path in BICEP_FILES for m in load(path).modules}
    unused = [p.relative_to(INFRA).as_posix() for p in BICEP_FILES if p != MAIN and p.resolve() not in used]
    assert unused == []


@pytest.mark.parametrize(("path", "module"), MODULE_CALLS)
def test_module_path_exists(path: Path, module: Module) -> None:
    assert (path.parent / module.path).is_file(), f"{module.symbol} points at missing {module.path}"


@pytest.mark.parametrize(("path", "module"), MODULE_CALLS)
def test_module_params_match_declarations(path: Path, module: Module) -> None:
    target = load((path.parent / module.path).resolve())
    unknown = sorted(set(module.params) - set(target.params))
    required = {name for name, has_default in target.params.items() if not has_default}
    missing = sorted(required - set(module.params))
    assert unknown == [], f"{module.symbol} passes params {module.path} does not declare"
    assert missing == [], f"{module.symbol} leaves required params of {module.path} unset"


def test_module_outputs_used_exist() -> None:
    # `identity.outputs.clientId` in main.bicep must be an output of the identity module.
    main = load(MAIN)
    by_symbol = {m.symbol: load((MAIN.parent / m.path).resolve()) for m in main.modules}
    used = set(re.findall(r"\b(\w+)\.outputs\.(\w+)", main.text))
    assert used, "main.bicep reads no module outputs"
    wrong = sorted(f"{s}.outputs.{o}" for s, o in used if s not in by_symbol or o not in by_symbol[s].outputs)
    assert wrong == []


def _parameters_file() -> dict[str, dict[str, object]]:
    data = json.loads((INFRA / "main.parameters.json").read_text())
    params = data["parameters"]
    assert isinstance(params, dict)
    return params


def test_parameters_file_matches_main() -> None:
    main = load(MAIN)
    params = _parameters_file()
    assert sorted(set(params) - set(main.params)) == []
    required = sorted(n for n, has_default in main.params.items() if not has_default)
    assert sorted(set(required) - set(params)) == []


def test_parameters_file_maps_the_azd_environment() -> None:
    params = _parameters_file()
    assert params["environmentName"] == {"value": "${AZURE_ENV_NAME}"}
    assert params["location"] == {"value": "${AZURE_LOCATION}"}
    assert params["principalId"] == {"value": "${AZURE_PRINCIPAL_ID}"}
    for name, entry in params.items():
        value = entry["value"]
        assert isinstance(value, str), name
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*(=[^}]*)?\}", value), f"{name}: {value!r}"


def test_main_outputs_for_azd() -> None:
    outputs = load(MAIN).outputs
    for name in (
        "AZURE_LOCATION",
        "AZURE_RESOURCE_GROUP",
        "AZURE_FUNCTION_APP_NAME",
        "SERVICE_API_ENDPOINT",
        "FUNCTION_APP_URL",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_DEPLOYMENT",
        "DTS_ENDPOINT",
        "DTS_DASHBOARD_URL",
        "TASKHUB_NAME",
        "AZURE_CLIENT_ID",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    ):
        assert name in outputs
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in outputs)


def test_main_parameter_defaults() -> None:
    main = load(MAIN)
    text = main.text
    assert "param chatModelName string = 'gpt-5.4-mini'" in text
    assert "param chatModelVersion string = '2026-03-17'" in text
    assert "param chatModelSkuName string = 'GlobalStandard'" in text
    assert "param dtsSkuName string = 'Consumption'" in text
    assert "param enableAuth bool = false" in text
    assert "'Dedicated'" in main.param_decorators["dtsSkuName"]


def test_api_versions_are_pinned_and_not_preview() -> None:
    for path in BICEP_FILES:
        for resource in load(path).resources:
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", resource.api_version), (
                f"{path.name}:{resource.symbol} uses {resource.api_version!r}"
            )


def test_repo_root_is_where_azd_expects_it() -> None:
    assert (ROOT / "azure.yaml").is_file()
    assert (ROOT / "host.json").is_file()


def _main_default(name: str) -> str | None:
    """The literal default of a main.bicep parameter, without quotes; None when it has none."""
    match = re.search(rf"^param {name} \w+ = (.+)$", load(MAIN).text, re.MULTILINE)
    return match.group(1).strip().strip("'") if match else None


def test_parameter_file_defaults_match_main() -> None:
    # `${AZD_VAR=default}` in main.parameters.json wins over main.bicep's own default, so the
    # two must agree or the README's defaults would depend on how the template is deployed.
    for name, entry in _parameters_file().items():
        value = entry["value"]
        assert isinstance(value, str)
        match = re.fullmatch(r"\$\{[A-Z0-9_]+=(?P<default>[^}]*)\}", value)
        if match:
            assert match.group("default") == _main_default(name), name


def test_model_parameters_map_to_azd_variables() -> None:
    # That the default model is still deployable is checked against scripts/preprovision's
    # list of refused models (tests/infra/test_hooks.py).
    model, version = _main_default("chatModelName"), _main_default("chatModelVersion")
    params = _parameters_file()
    assert params["chatModelName"] == {"value": f"${{AZURE_OPENAI_MODEL={model}}}"}
    assert params["chatModelVersion"] == {"value": f"${{AZURE_OPENAI_MODEL_VERSION={version}}}"}
    assert params["chatModelSkuName"] == {"value": "${AZURE_OPENAI_SKU=GlobalStandard}"}
    assert params["openAiApiVersion"] == {
        "value": f"${{AZURE_OPENAI_API_VERSION={_main_default('openAiApiVersion')}}}"
    }
