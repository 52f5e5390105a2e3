"""devhost: a pure-Python stand-in for the Azure Functions host.

It indexes function_app.py with the azure-functions library, serves the HTTP triggers,
hands the durable client binding to functions, and drives orchestrations, activities and
entities from a Durable Task backend over the gRPC sidecar protocol.
"""
