// Durable Task Scheduler and the app's task hub. The app identity and (optionally) the
// deploying user get Durable Task Data Contributor on the scheduler: the app to run
// orchestrations, the user to open the DTS dashboard.
param name string
param location string
param tags object = {}
param taskHubName string
@allowed([
  'Consumption'
  'Dedicated'
])
param skuName string = 'Consumption'
@description('Capacity units; used by the Dedicated SKU only.')
@minValue(1)
param skuCapacity int = 1
@description('IP ranges allowed to reach the scheduler; an empty list denies everything.')
param ipAllowlist array = [
  '0.0.0.0/0'
]
@description('Principal (the app identity) granted Durable Task Data Contributor.')
param appPrincipalId string
@description('Deploying user or group for the dashboard; empty skips the assignment.')
param userPrincipalId string = ''
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param userPrincipalType string = 'User'

var durableTaskDataContributorRoleId = '0ad04412-c4d5-4796-b79c-f76d14c8d402'
var dedicatedSku = {
  name: 'Dedicated'
  capacity: skuCapacity
}
var consumptionSku = {
  name: 'Consumption'
}

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    ipAllowlist: ipAllowlist
    sku: skuName == 'Dedicated' ? dedicatedSku : consumptionSku
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

resource appDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(scheduler.id, appPrincipalId, durableTaskDataContributorRoleId)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource userDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(scheduler.id, userPrincipalId, durableTaskDataContributorRoleId)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRoleId)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

output name string = scheduler.name
output id string = scheduler.id
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
// The task hub's own dashboard link when the API returns one, else the dashboard's front page
// (enter the endpoint and task hub there).
output dashboardUrl string = taskHub.properties.?dashboardUrl ?? 'https://dashboard.durabletask.io/'
