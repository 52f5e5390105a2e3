// Optional App Service authentication (Easy Auth) with Microsoft Entra ID. When on, every
// request except the health probe needs a bearer token for the given app registration, and
// the platform passes the caller to the app in X-MS-CLIENT-PRINCIPAL-ID, which is how the
// API scopes threads to their owner. No client secret: the app only validates tokens.
param functionAppName string
@description('Application (client) id of the Entra ID app registration that tokens are issued for.')
@minLength(36)
@maxLength(36)
param clientId string
param tenantId string = tenant().tenantId
@description('Paths served without authentication.')
param excludedPaths array = [
  '/api/health'
]

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: excludedPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            clientId
            'api://${clientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}
