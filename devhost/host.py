"""Runs an app the way `func start` would: configuration, indexing, backend, HTTP, workers.

`DevHost` reads host.json (route prefix, task hub name) and local.settings.json (Values
become environment variables unless already set), indexes function_app.py, starts the
Durable Task backend, and then serves HTTP while driving durable work items, until it is
told to stop (Ctrl-C / SIGTERM). Shutdown stops taking requests, lets running work
finish briefly, and closes the backend cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn
from durabletask.client import AsyncTaskHubGrpcClient

from devhost.app_index import HTTP_TRIGGER, IndexedFunction, load_app
from devhost.backends import Backend, make_backend
from devhost.http_server import HttpFrontend
from devhost.invoker import Invoker
from devhost.local_model import start_if_unconfigured
from devhost.management import ManagementApi
from devhost.work_items import WorkItemDriver

logger = logging.getLogger("devhost")


class HostConfigError(Exception):
    """host.json or local.settings.json cannot be used."""


@dataclass(frozen=True)
class HostOptions:
    app_dir: Path
    host: str = "127.0.0.1"
    port: int = 7071
    backend: str = "sqlite"
    db_path: Path | None = None
    durability: Literal["full", "normal"] = "normal"
    local_model: bool = True  # serve devhost/local_model.py when no model endpoint is configured


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise HostConfigError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise HostConfigError(f"{path} must hold a JSON object")
    return data


def apply_local_settings(app_dir: Path) -> list[str]:
    """Copy local.settings.json Values into the environment (existing variables win)."""
    values = _read_json(app_dir / "local.settings.json").get("Values") or {}
    applied = []
    for name, value in values.items():
        if name not in os.environ and value is not None:
            os.environ[name] = str(value)
            applied.append(name)
    return applied


def _expand(value: str) -> str:
    return re.sub(r"%([A-Za-z0-9_]+)%", lambda m: os.environ.get(m.group(1), ""), value)


def host_settings(app_dir: Path) -> tuple[str, str]:
    """(route prefix, task hub name) from host.json, with %VAR% expanded."""
    extensions = _read_json(app_dir / "host.json").get("extensions") or {}
    http = extensions.get("http") or {}
    prefix = str(http.get("routePrefix", "api"))
    hub = _expand(str((extensions.get("durableTask") or {}).get("hubName") or "")) or "default"
    return prefix, hub


def client_binding(backend: Backend, task_hub: str, public_url: str) -> str:
    """The durable client binding JSON, shaped like the Functions host's."""
    webhooks = f"{public_url}/runtime/webhooks/durabletask"
    return json.dumps(
        {
            "taskHubName": task_hub,
            "connectionName": "Storage",
            "rpcBaseUrl": backend.address,
            "baseUrl": webhooks,
            "httpBaseUrl": webhooks,
            "requiredQueryStringParameters": "",
            "creationUrls": {},
            "managementUrls": {},
            "maxGrpcMessageSizeInBytes": 0,
        }
    )


def describe_functions(functions: list[IndexedFunction], public_url: str, prefix: str) -> list[str]:
    lines = []
    for function in sorted(functions, key=lambda f: (f.trigger_type != HTTP_TRIGGER, f.name)):
        if function.trigger_type == HTTP_TRIGGER:
            route = "/".join(p for p in (prefix.strip("/"), (function.route or "").strip("/")) if p)
            lines.append(f"  {function.name}: [{','.join(function.methods)}] {public_url}/{route}")
        else:
            name = f" ({function.durable_name})" if function.durable_name != function.name else ""
            lines.append(f"  {function.name}{name}: {function.trigger_type}")
    return lines


class _Server(uvicorn.Server):
    """uvicorn's server minus its signal handling: DevHost owns SIGINT/SIGTERM so that it
    can shut the workers and the backend down before the process exits."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DevHost:
    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self._server: uvicorn.Server | None = None

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "::") else self.options.host
        return f"http://{host}:{self.options.port}"

    def request_stop(self) -> None:
        if self._server is not None:
            if self._server.should_exit:
                self._server.force_exit = True  # a second Ctrl-C stops waiting for requests
            self._server.should_exit = True

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)

    async def serve(self) -> None:
        app_dir = self.options.app_dir.resolve()
        applied = apply_local_settings(app_dir)
        if applied:
            logger.info("local.settings.json: set %s", ", ".join(sorted(applied)))
        # Local model hook (devhost/local_model.py): with no model endpoint configured, serve a
        # small model on loopback and set OPENAI_BASE_URL/OPENAI_MODEL before the app is indexed.
        local_model = start_if_unconfigured() if self.options.local_model else None
        prefix, task_hub = host_settings(app_dir)
        functions = load_app(app_dir)
        db_path = self.options.db_path or app_dir / ".devhost" / "taskhub.db"
        backend = make_backend(self.options.backend, db_path=db_path, durability=self.options.durability)
        backend.start()
        logger.info("backend: %s", backend.description)
        invoker = Invoker(client_binding(backend, task_hub, self.public_url), str(app_dir))
        driver = WorkItemDriver(
            backend.address,
            functions,
            invoker,
            metadata=backend.metadata,
            credentials=backend.channel_credentials(),
        )
        management_client = AsyncTaskHubGrpcClient(
            host_address=backend.address,
            metadata=list(backend.metadata) or None,
            secure_channel=backend.channel_credentials() is not None,
        )
        frontend = HttpFrontend(functions, invoker, ManagementApi(management_client), prefix)
        config = uvicorn.Config(
            frontend,
            host=self.options.host,
            port=self.options.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config)
        self._install_signal_handlers()
        driver_task = asyncio.create_task(driver.run())
        server_task = asyncio.create_task(self._server.serve())
        try:
            while not self._server.started:
                if server_task.done():
                    break
                await asyncio.sleep(0.02)
            if self._server.started:
                logger.info(
                    "functions:\n%s", "\n".join(describe_functions(functions, self.public_url, prefix))
                )
                logger.info("devhost ready on %s (Ctrl-C to stop)", self.public_url)
            await server_task
        finally:
            await driver.stop()
            driver_task.cancel()
            await asyncio.gather(driver_task, return_exceptions=True)
            await management_client.close()
            invoker.close()
            backend.stop()
            if local_model is not None:  # local model hook
                local_model.stop()
            logger.info("devhost stopped")
