"""The Azure Functions app: composition only. Each blueprint registers its own functions."""

import azure.durable_functions as df

import http_api
from activities import call_model, run_tool, sweep
from entities import legacy_history, storage, usage
from orchestrations import maintenance, thread

app = df.DFApp()
app.register_functions(http_api.bp)
app.register_functions(thread.bp)
app.register_functions(maintenance.bp)
app.register_functions(call_model.bp)
app.register_functions(run_tool.bp)
app.register_functions(sweep.bp)
app.register_functions(storage.bp)
app.register_functions(legacy_history.bp)
app.register_functions(usage.bp)
