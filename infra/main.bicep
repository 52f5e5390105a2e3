// Everything `azd up` provisions for Durable Agent: one resource group holding a Flex
// Consumption function app, its identity and storage, a Durable Task Scheduler with a task
// hub, Azure OpenAI with a chat deployment, and Log Analytics + Application Insights.
// No keys or connection-string secrets anywhere: every connection uses Entra ID.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Azure region for all resources.')
param location string

@description('Object id of the deploying user or group (azd sets AZURE_PRINCIPAL_ID); gets the DTS dashboard and Azure OpenAI roles. Empty skips those assignments.')
param principalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Resource group name; empty means rg-<environmentName>.')
param resourceGroupName string = ''

@description('Region for Azure OpenAI when the model is not offered in `location`; empty means `location`.')
param openAiLocation string = ''

// The default model must still accept new deployments: gpt-4o-mini (2024-07-18) and
// gpt-4.1-mini are Deprecated, so new deployments of them are refused. gpt-5.4-mini
// (2026-03-17) is Generally Available with GlobalStandard and needs no access request.
@description('Chat model deployed to Azure OpenAI (must be Generally Available, not Deprecated).')
param chatModelName string = 'gpt-5.4-mini'
@description('Version of chatModelName.')
param chatModelVersion string = '2026-03-17'
@description('Chat deployment capacity in thousands of tokens per minute.')
@minValue(1)
param chatModelCapacity int = 30
@description('Deployment SKU, e.g. GlobalStandard, DataZoneStandard or Standard.')
param chatModelSkuName string = 'GlobalStandard'
@description('Chat deployment name; empty means the model name.')
param chatDeploymentName string = ''
@description('Azure OpenAI data-plane API version the app calls the deployment with (AZURE_OPENAI_API_VERSION).')
param openAiApiVersion string = '2025-04-01-preview'

@allowed([
  'Consumption'
  'Dedicated'
])
param dtsSkuName string = 'Consumption'
@minValue(1)
param dtsSkuCapacity int = 1
param taskHubName string = 'default'

@minValue(40)
@maxValue(1000)
param functionMaximumInstanceCount int = 40
@allowed([
  512
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('Require a Microsoft Entra ID access token on the thread endpoints: the app validates it (AUTH_MODE=entra) and scopes threads to the caller.')
param enableAuth bool = false
@description('Application (client) id of the Entra ID app registration whose API (api://<id>) the tokens are for; required when enableAuth is true.')
param authClientId string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var deploymentName = empty(chatDeploymentName) ? chatModelName : chatDeploymentName

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${resourceToken}'
    blobDataOwnerPrincipalId: identity.outputs.principalId
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    metricsPublisherPrincipalId: identity.outputs.principalId
  }
}

module dts 'app/dts.bicep' = {
  name: 'dts'
  scope: rg
  params: {
    name: 'dts-${resourceToken}'
    location: location
    tags: tags
    taskHubName: taskHubName
    skuName: dtsSkuName
    skuCapacity: dtsSkuCapacity
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module openAi 'app/openai.bicep' = {
  name: 'openai'
  scope: rg
  params: {
    name: 'oai-${resourceToken}'
    location: empty(openAiLocation) ? location : openAiLocation
    tags: tags
    customSubDomainName: 'oai-${resourceToken}'
    deploymentName: deploymentName
    modelName: chatModelName
    modelVersion: chatModelVersion
    capacity: chatModelCapacity
    skuName: chatModelSkuName
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    dtsEndpoint: dts.outputs.endpoint
    taskHubName: dts.outputs.taskHubName
    openAiEndpoint: openAi.outputs.endpoint
    openAiDeploymentName: openAi.outputs.deploymentName
    openAiApiVersion: openAiApiVersion
    maximumInstanceCount: functionMaximumInstanceCount
    instanceMemoryMB: functionInstanceMemoryMB
    authMode: enableAuth ? 'entra' : 'none'
    authTenantId: enableAuth ? tenant().tenantId : ''
    authAudiences: enableAuth ? [
      'api://${authClientId}'
      authClientId
    ] : []
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_ENDPOINT string = functionApp.outputs.uri
output FUNCTION_APP_URL string = functionApp.outputs.uri
output AZURE_CLIENT_ID string = identity.outputs.clientId
output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT string = openAi.outputs.deploymentName
output AZURE_OPENAI_API_VERSION string = openAiApiVersion
output DTS_NAME string = dts.outputs.name
output DTS_ENDPOINT string = dts.outputs.endpoint
output DTS_DASHBOARD_URL string = dts.outputs.dashboardUrl
output TASKHUB_NAME string = dts.outputs.taskHubName
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AUTH_ENABLED bool = enableAuth
