"""The HTTP API (route prefix `api`): threads, messages, approvals, notes, agents, health.

`bp` carries every route: routes.py registers the thread routes on it, agents_api.py the
agents' routes, events.py the event stream (importing them here registers them)."""

from http_api import agents_api, events
from http_api.routes import bp

__all__ = ["agents_api", "bp", "events"]
