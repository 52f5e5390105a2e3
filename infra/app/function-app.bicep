// The function app on a Flex Consumption (FC1) plan, Python 3.13, running as the
// user-assigned identity. Every connection is identity-based: the deployment package
// container, AzureWebJobsStorage, the Durable Task Scheduler, Azure OpenAI and Application
// Insights. Basic (publishing) credentials are off, so nothing here has a key.
param name string
param planName string
param location string
param tags object = {}
@description('Resource id of the user-assigned identity the app runs as.')
param identityId string
@description('Client id of that identity (AZURE_CLIENT_ID and the ClientID of every identity connection).')
param identityClientId string
param storageAccountName string
@description('Blob endpoint of the storage account, e.g. https://NAME.blob.core.windows.net/.')
param storageBlobEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string
param dtsEndpoint string
param taskHubName string
param openAiEndpoint string
param openAiDeploymentName string
param openAiApiVersion string
param runtimeVersion string = '3.13'
@description('AUTH_MODE: `entra` makes the app validate Entra ID bearer tokens itself and scope threads to their `oid`; `none` serves every caller the same threads.')
@allowed([
  'none'
  'entra'
])
param authMode string = 'none'
@description('Tenant whose tokens the app accepts (AUTH_TENANT_ID); empty unless authMode is entra.')
param authTenantId string = ''
@description('Accepted token audiences (AUTH_AUDIENCE): api://<client id> for v1 tokens and the client id for v2 tokens.')
param authAudiences array = []
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// Exactly what agent/settings.py reads in Azure, plus what the Functions host itself needs
// (tests/infra/test_app_settings.py checks both directions). No key, no secret.
var appSettings = {
  // Host storage via the identity (blob only: DTS holds the durable state).
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // Durable Task Scheduler (host.json: hubName %TASKHUB_NAME%, storageProvider azureManaged).
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${dtsEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'
  TASKHUB_NAME: taskHubName
  // Application Insights with Entra ID ingestion (local auth is disabled on the component).
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // The app (agent/settings.py).
  AZURE_CLIENT_ID: identityClientId
  MODEL_PROVIDER: 'azure'
  AZURE_OPENAI_ENDPOINT: openAiEndpoint
  AZURE_OPENAI_DEPLOYMENT: openAiDeploymentName
  AZURE_OPENAI_API_VERSION: openAiApiVersion
  // Who the caller is (agent/auth.py). With `entra` the app validates the bearer token's
  // signature (the tenant's published keys), issuer, audience and lifetime, and threads
  // belong to its `oid`; AUTH_ISSUER and AUTH_JWKS_URL keep their tenant-derived defaults.
  AUTH_MODE: authMode
  AUTH_TENANT_ID: authTenantId
  AUTH_AUDIENCE: join(authAudiences, ',')
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: runtimeVersion
      }
    }
  }
}

// With authMode entra the app validates tokens itself, so App Service Authentication (Easy
// Auth) must not sit in front as a second validator with its own issuer and audience rules.
// Earlier versions of these templates turned it on when auth was enabled, and removing a
// resource from a template does not remove it from the site: declaring it off does.
resource appServiceAuthOff 'Microsoft.Web/sites/config@2024-04-01' = if (authMode == 'entra') {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: false
    }
  }
}

// azd deploys with an Entra ID token, so basic-auth publishing (SCM and FTP) stays off.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
output uri string = 'https://${site.properties.defaultHostName}'
