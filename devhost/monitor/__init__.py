"""devhost's monitor page at http://127.0.0.1:7071/_devhost/: threads, their conversations,
orchestration histories, state and pending approvals, with suspend, resume, terminate,
purge and raise-event actions.

Plain HTML, CSS and JavaScript served from `static/` (no build step, nothing loaded from
the internet); everything it shows comes through the durabletask client (so it works on
every backend) and, for messages and approvals, through the app's own public HTTP API.
devhost only: `.funcignore` keeps devhost out of the Azure package.

Interface for devhost's HTTP layer (Starlette): add `monitor_pages(client, api_prefix=prefix,
key=key)` to its routes (before any catch-all): the monitor mounted at `MOUNT_PATH` plus a
redirect from `/_devhost` to `/_devhost/`. `monitor_routes` (relative routes) and
`monitor_mount` (those mounted at `MOUNT_PATH`) are the pieces.
"""

from __future__ import annotations

from durabletask.client import AsyncTaskHubGrpcClient
from starlette.routing import BaseRoute, Mount, Route

from devhost.monitor.routes import build_routes, to_index

MOUNT_PATH = "/_devhost"

__all__ = ["MOUNT_PATH", "monitor_mount", "monitor_pages", "monitor_routes"]


def monitor_routes(
    client: AsyncTaskHubGrpcClient, *, api_prefix: str = "api", key: str | None = None
) -> list[BaseRoute]:
    """The monitor's routes, relative to where they are mounted (`MOUNT_PATH`).

    `api_prefix` is the app's HTTP route prefix (host.json `extensions.http.routePrefix`).
    `key`: devhost's management key when the app runs with thread owners; the monitor's
    JSON routes then need it (`x-functions-key` or `?code=`), as the management API does.
    """
    return build_routes(client, api_prefix, key)


def monitor_mount(
    client: AsyncTaskHubGrpcClient, *, api_prefix: str = "api", key: str | None = None
) -> Mount:
    """`monitor_routes` mounted at `MOUNT_PATH`."""
    routes = monitor_routes(client, api_prefix=api_prefix, key=key)
    return Mount(MOUNT_PATH, routes=routes, name="devhost-monitor")


def monitor_pages(
    client: AsyncTaskHubGrpcClient, *, api_prefix: str = "api", key: str | None = None
) -> list[BaseRoute]:
    """Everything devhost serves for the monitor: `monitor_mount` and the `/_devhost` redirect."""
    return [
        Route(MOUNT_PATH, to_index, methods=["GET", "HEAD"]),
        monitor_mount(client, api_prefix=api_prefix, key=key),
    ]
