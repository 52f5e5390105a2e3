"""The Azure Functions app: composition only. Each blueprint registers its own functions."""

import azure.durable_functions as df

import activities
import entities
import http_api
import orchestrations

app = df.DFApp()
app.register_functions(http_api.bp)
app.register_functions(orchestrations.bp)
app.register_functions(activities.bp)
app.register_functions(entities.bp)
