"""What the resources must be: Flex Consumption on Python 3.13 with a user-assigned identity,
identity-only connections, the role assignments each identity needs, azd tags, and the
optional Entra ID token check (validated in the app, AUTH_MODE=entra)."""

from __future__ import annotations

import re

from tests.infra.bicep import INFRA, MAIN, BicepFile, Resource, load, lookup, string_at, string_value, text_at

APP = INFRA / "app"

ROLE_IDS = {
    "Durable Task Data Contributor": "0ad04412-c4d5-4796-b79c-f76d14c8d402",
    "Cognitive Services OpenAI User": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
}


def _one(bicep: BicepFile, type_name: str) -> Resource:
    found = bicep.resources_of(type_name)
    assert len(found) == 1, f"{bicep.path.name}: expected one {type_name}, found {len(found)}"
    return found[0]


def _literal(bicep: BicepFile, resource_type: str, dotted: str) -> str:
    node = lookup(_one(bicep, resource_type).body, dotted)
    assert node is not None, f"{resource_type} has no {dotted}"
    return (node.text or b"").decode()


def test_flex_consumption_plan() -> None:
    app = load(APP / "function-app.bicep")
    assert _literal(app, "Microsoft.Web/serverfarms", "sku.name") == "'FC1'"
    assert _literal(app, "Microsoft.Web/serverfarms", "sku.tier") == "'FlexConsumption'"


def test_function_app_runtime_identity_and_deployment_storage() -> None:
    app = load(APP / "function-app.bicep")
    site = "Microsoft.Web/sites"
    assert _literal(app, site, "kind") == "'functionapp,linux'"
    assert _literal(app, site, "identity.type") == "'UserAssigned'"
    assert _literal(app, site, "properties.functionAppConfig.runtime.name") == "'python'"
    assert _literal(app, site, "properties.functionAppConfig.runtime.version") == "runtimeVersion"
    assert "param runtimeVersion string = '3.13'" in app.text
    storage = "properties.functionAppConfig.deployment.storage"
    assert _literal(app, site, f"{storage}.type") == "'blobContainer'"
    assert _literal(app, site, f"{storage}.authentication.type") == "'UserAssignedIdentity'"
    assert _literal(app, site, f"{storage}.authentication.userAssignedIdentityResourceId") == "identityId"
    assert _literal(app, site, "properties.httpsOnly") == "true"
    assert "'azd-service-name': 'api'" in _literal(app, site, "tags")


def test_basic_publishing_credentials_are_off() -> None:
    app = load(APP / "function-app.bicep")
    policies = app.resources_of("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert sorted(string_at(p.body, "name") or "" for p in policies) == ["ftp", "scm"]
    assert all((lookup(p.body, "properties.allow") or p.body).text == b"false" for p in policies)


def test_storage_is_identity_only() -> None:
    storage = load(APP / "storage.bicep")
    account = "Microsoft.Storage/storageAccounts"
    assert _literal(storage, account, "properties.allowSharedKeyAccess") == "false"
    assert _literal(storage, account, "properties.allowBlobPublicAccess") == "false"
    assert _literal(storage, "Microsoft.Storage/storageAccounts/blobServices/containers", "name") == (
        "deploymentContainerName"
    )


def test_openai_is_entra_only_with_a_chat_deployment() -> None:
    openai = load(APP / "openai.bicep")
    account = "Microsoft.CognitiveServices/accounts"
    assert _literal(openai, account, "kind") == "'OpenAI'"
    assert _literal(openai, account, "properties.disableLocalAuth") == "true"
    assert _literal(openai, account, "properties.customSubDomainName") == "customSubDomainName"
    deployment = "Microsoft.CognitiveServices/accounts/deployments"
    assert _literal(openai, deployment, "sku.name") == "skuName"
    assert _literal(openai, deployment, "properties.model.name") == "modelName"
    assert _literal(openai, deployment, "properties.model.format") == "'OpenAI'"


def test_application_insights_rejects_keys() -> None:
    monitoring = load(APP / "monitoring.bicep")
    assert _literal(monitoring, "Microsoft.Insights/components", "properties.DisableLocalAuth") == "true"
    assert _literal(monitoring, "Microsoft.Insights/components", "properties.WorkspaceResourceId") == (
        "logAnalytics.id"
    )


def test_scheduler_and_task_hub() -> None:
    dts = load(APP / "dts.bicep")
    _one(dts, "Microsoft.DurableTask/schedulers")
    _one(dts, "Microsoft.DurableTask/schedulers/taskHubs")
    assert "ipAllowlist" in _literal(dts, "Microsoft.DurableTask/schedulers", "properties")
    assert "'0.0.0.0/0'" in dts.text  # an empty allow list denies every caller


def _assignments(bicep: BicepFile) -> list[tuple[str, str, str]]:
    """(role id, principal expression, principalType expression) per role assignment."""
    out = []
    variables = {name: string_value(node) for name, node in bicep.variables.items() if node.type == "string"}
    for r in bicep.resources_of("Microsoft.Authorization/roleAssignments"):
        role = text_at(r.body, "properties.roleDefinitionId")
        match = re.search(r"roleDefinitions',\s*(\w+)\)", role)
        assert match, role
        role_id = variables.get(match.group(1)) or ""
        principal = text_at(r.body, "properties.principalId")
        kind = text_at(r.body, "properties.principalType")
        out.append((role_id, principal, kind))
    return out


def test_role_assignments() -> None:
    expected = {
        "storage.bicep": {
            (ROLE_IDS["Storage Blob Data Owner"], "blobDataOwnerPrincipalId", "'ServicePrincipal'")
        },
        "monitoring.bicep": {
            (ROLE_IDS["Monitoring Metrics Publisher"], "metricsPublisherPrincipalId", "'ServicePrincipal'")
        },
        "dts.bicep": {
            (ROLE_IDS["Durable Task Data Contributor"], "appPrincipalId", "'ServicePrincipal'"),
            (ROLE_IDS["Durable Task Data Contributor"], "userPrincipalId", "userPrincipalType"),
        },
        "openai.bicep": {
            (ROLE_IDS["Cognitive Services OpenAI User"], "appPrincipalId", "'ServicePrincipal'"),
            (ROLE_IDS["Cognitive Services OpenAI User"], "userPrincipalId", "userPrincipalType"),
        },
    }
    for name, wanted in expected.items():
        assert set(_assignments(load(APP / name))) == wanted, name


def test_main_wires_identities_into_role_modules() -> None:
    main = load(MAIN)
    modules = {m.symbol: m for m in main.modules}

    def passed(symbol: str, param: str) -> str:
        return (modules[symbol].params[param].text or b"").decode()

    app_principal = "identity.outputs.principalId"
    assert passed("storage", "blobDataOwnerPrincipalId") == app_principal
    assert passed("monitoring", "metricsPublisherPrincipalId") == app_principal
    for symbol in ("dts", "openAi"):
        assert passed(symbol, "appPrincipalId") == app_principal
        assert passed(symbol, "userPrincipalId") == "principalId"
        assert passed(symbol, "userPrincipalType") == "principalType"
    assert passed("functionApp", "identityClientId") == "identity.outputs.clientId"


def test_resource_group_is_tagged_for_azd() -> None:
    main = load(MAIN)
    assert "'azd-env-name': environmentName" in (main.variables["tags"].text or b"").decode()
    assert _literal(main, "Microsoft.Resources/resourceGroups", "tags") == "tags"


def test_auth_is_optional_and_validated_in_the_app() -> None:
    main = load(MAIN)
    modules = {m.symbol: m for m in main.modules}
    params = modules["functionApp"].params
    assert (params["authMode"].text or b"").decode() == "enableAuth ? 'entra' : 'none'"
    assert (params["authTenantId"].text or b"").decode() == "enableAuth ? tenant().tenantId : ''"
    audiences = (params["authAudiences"].text or b"").decode()
    assert audiences.startswith("enableAuth ? [")
    assert "'api://${authClientId}'" in audiences
    assert "authClientId\n" in audiences
    assert "param enableAuth bool = false" in main.text
    # No App Service Authentication (Easy Auth) in front: the app validates the tokens
    # itself, so there is one validator, and it is the one the tests exercise. With auth on,
    # the templates declare Easy Auth off, which also turns off what earlier versions of
    # these templates turned on.
    assert not any(m.path == "app/auth.bicep" for m in main.modules)
    configs = [
        (path.name, r)
        for path in INFRA.rglob("*.bicep")
        for r in load(path).resources_of("Microsoft.Web/sites/config")
    ]
    assert len(configs) == 1
    name, config = configs[0]
    assert name == "function-app.bicep"
    assert string_at(config.body, "name") == "authsettingsV2"
    assert text_at(config.body, "properties") == "{\n    platform: {\n      enabled: false\n    }\n  }"
    assert (
        "resource appServiceAuthOff 'Microsoft.Web/sites/config@2024-04-01' = if (authMode == 'entra')"
        in (load(APP / "function-app.bicep").text)
    )


# Every resource type the templates may use, with the API versions checked against the
# Azure resource reference. A typo in a type, or an unreviewed new type, fails here.
KNOWN_TYPES = {
    "Microsoft.Resources/resourceGroups": "2024-03-01",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "2023-01-31",
    "Microsoft.Storage/storageAccounts": "2024-01-01",
    "Microsoft.Storage/storageAccounts/blobServices": "2024-01-01",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "2024-01-01",
    "Microsoft.OperationalInsights/workspaces": "2023-09-01",
    "Microsoft.Insights/components": "2020-02-02",
    "Microsoft.DurableTask/schedulers": "2025-11-01",
    "Microsoft.DurableTask/schedulers/taskHubs": "2025-11-01",
    "Microsoft.CognitiveServices/accounts": "2024-10-01",
    "Microsoft.CognitiveServices/accounts/deployments": "2024-10-01",
    "Microsoft.Web/serverfarms": "2024-04-01",
    "Microsoft.Web/sites": "2024-04-01",
    "Microsoft.Web/sites/config": "2024-04-01",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": "2024-04-01",
    "Microsoft.Authorization/roleAssignments": "2022-04-01",
}


def test_resource_types_and_api_versions_are_known() -> None:
    used = {
        (path.relative_to(INFRA).as_posix(), r.symbol): (r.type, r.api_version)
        for path in sorted(INFRA.rglob("*.bicep"))
        for r in load(path).resources
    }
    unknown = {k: v for k, v in used.items() if KNOWN_TYPES.get(v[0]) != v[1]}
    assert unknown == {}
    assert {t for t, _ in used.values()} == set(KNOWN_TYPES), "KNOWN_TYPES lists a type no template uses"
