"""Activities of the app: `call_model` and `sweep_threads`; function_app.py registers each.

Importing this package builds no clients: an activity gets its clients on first invocation.
"""
