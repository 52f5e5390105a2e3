"""The function app's settings in Bicep against what the code reads (agent.settings).

Both directions fail: a setting the app needs in Azure that Bicep does not set, and a
setting Bicep sets that neither the code nor the platform allow-list below knows."""

from __future__ import annotations

import json

from agent.settings import DECLARED_SETTINGS
from tests.infra.bicep import INFRA, ROOT, load, lookup, properties, string_at

FUNCTION_APP = INFRA / "app" / "function-app.bicep"

# Read by the Functions host or platform, not by the app code. Each one is named here with
# the reason, and each must be set.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__accountName": "host storage account, identity-based connection",
    "AzureWebJobsStorage__credential": "'managedidentity' for the identity-based host storage",
    "AzureWebJobsStorage__clientId": "which user-assigned identity the host storage uses",
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING": "host.json durableTask storageProvider connectionStringName",
    "TASKHUB_NAME": "host.json durableTask hubName %TASKHUB_NAME%",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra ID ingestion for the host's own telemetry",
}

# Declared by the app but deliberately not set in Azure: local-only model options (and
# their keys), and tuning knobs whose defaults are right for the deployment.
NOT_SET_IN_AZURE = {
    "OPENAI_BASE_URL": "local OpenAI-compatible endpoint",
    "OPENAI_API_KEY": "key for a local OpenAI-compatible endpoint",
    "OPENAI_MODEL": "model for a local OpenAI-compatible endpoint",
    "AZURE_OPENAI_API_KEY": "opt-in key for local use; Azure uses the managed identity",
    "SYSTEM_PROMPT": "has a default",
    "MODEL_TIMEOUT_SECONDS": "has a default",
    "MODEL_MAX_ATTEMPTS": "has a default",
    "MODEL_RETRY_MAX_SECONDS": "has a default",
    "MODEL_MAX_OUTPUT_TOKENS": "has a default",
    "CONTEXT_WINDOW_BYTES": "has a default",
    "TRUST_CLIENT_PRINCIPAL_HEADER": "legacy switch for AUTH_MODE=app_service; Bicep sets AUTH_MODE",
    "AUTH_ISSUER": "has a default derived from AUTH_TENANT_ID (the tenant's v2.0 and v1 issuers)",
    "AUTH_JWKS_URL": "has a default derived from AUTH_TENANT_ID (the tenant's published keys)",
    "PAYLOAD_CAP_BYTES": "has a default",
    "THREAD_RETENTION_DAYS": "off unless an operator opts in",
    "MAINTENANCE_INTERVAL_SECONDS": "has a default",
    "REPLY_POLL_INITIAL_MS": "has a default",
    "REPLY_POLL_MAX_MS": "has a default",
    "RATE_LIMIT_MESSAGES_PER_MINUTE": "has a default",
    "RATE_LIMIT_THREADS_PER_PRINCIPAL": "has a default",
    "RATE_LIMIT_TOKENS_PER_DAY": "has a default",
    "APPROVAL_TIMEOUT_SECONDS": "has a default",
    "MAX_TOOL_ROUNDS": "has a default",
}

# Never in Azure, whatever else changes: keys, and settings that would switch the provider.
FORBIDDEN = {"AZURE_OPENAI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"}

# Flex Consumption sets these from functionAppConfig and rejects them as app settings.
FLEX_REJECTS = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"}


def bicep_app_settings() -> dict[str, str]:
    """name -> value expression of every app setting the function app gets."""
    app = load(FUNCTION_APP)
    assert "appSettings" in app.variables, "function-app.bicep must build its settings in `var appSettings`"
    settings = {k: (v.text or b"").decode() for k, v in properties(app.variables["appSettings"]).items()}
    (site,) = app.resources_of("Microsoft.Web/sites")
    wired = lookup(site.body, "properties.siteConfig.appSettings")
    assert wired is not None, "the site sets no siteConfig.appSettings"
    assert "items(appSettings)" in (wired.text or b"").decode(), (
        "siteConfig.appSettings must come from appSettings"
    )
    # No other place may add settings behind the test's back.
    configs = app.resources_of("Microsoft.Web/sites/config")
    assert not any(string_at(c.body, "name") == "appsettings" for c in configs)
    return settings


def test_allow_lists_are_consistent() -> None:
    assert set(NOT_SET_IN_AZURE) <= set(DECLARED_SETTINGS), (
        "NOT_SET_IN_AZURE names a setting the app no longer reads"
    )
    assert not set(PLATFORM_SETTINGS) & set(NOT_SET_IN_AZURE)
    assert set(FORBIDDEN) <= set(NOT_SET_IN_AZURE)


def test_bicep_sets_every_setting_the_app_needs_in_azure() -> None:
    needed = (set(DECLARED_SETTINGS) - set(NOT_SET_IN_AZURE)) | set(PLATFORM_SETTINGS)
    missing = sorted(needed - set(bicep_app_settings()))
    assert missing == [], f"the app reads these in Azure but Bicep does not set them: {missing}"


def test_bicep_sets_nothing_unknown() -> None:
    known = set(DECLARED_SETTINGS) | set(PLATFORM_SETTINGS)
    unknown = sorted(set(bicep_app_settings()) - known)
    assert unknown == [], f"Bicep sets settings neither the code nor the platform list knows: {unknown}"


def test_bicep_sets_no_key_and_no_local_only_setting() -> None:
    settings = set(bicep_app_settings())
    assert sorted(settings & FORBIDDEN) == []
    assert sorted(settings & set(NOT_SET_IN_AZURE)) == []
    assert sorted(settings & FLEX_REJECTS) == []


def test_setting_values_use_the_identity() -> None:
    s = bicep_app_settings()
    assert s["MODEL_PROVIDER"] == "'azure'"
    assert s["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert s["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert s["AZURE_CLIENT_ID"] == "identityClientId"
    assert s["DURABLE_TASK_SCHEDULER_CONNECTION_STRING"] == (
        "'Endpoint=${dtsEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'"
    )
    assert (
        s["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "'ClientId=${identityClientId};Authorization=AAD'"
    )


def test_host_json_reads_settings_that_bicep_sets() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    durable = host["extensions"]["durableTask"]
    settings = bicep_app_settings()
    assert durable["storageProvider"]["connectionStringName"] in settings
    hub = durable["hubName"]
    assert hub.startswith("%")
    assert hub.endswith("%")
    assert hub.strip("%") in settings


def test_auth_settings_come_from_the_auth_parameters() -> None:
    s = bicep_app_settings()
    assert s["AUTH_MODE"] == "authMode"
    assert s["AUTH_TENANT_ID"] == "authTenantId"
    assert s["AUTH_AUDIENCE"] == "join(authAudiences, ',')"
    app = load(FUNCTION_APP)
    # Only the modes Azure can use: app_service needs App Service Authentication in front,
    # which the templates do not configure.
    decorators = app.param_decorators["authMode"]
    assert "'entra'" in decorators
    assert "'none'" in decorators
    assert "'app_service'" not in decorators
    assert "param authMode string = 'none'" in app.text
