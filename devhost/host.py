"""Runs an app the way `func start` would: configuration, indexing, backend, warmup, HTTP, workers.

`DevHost` reads host.json (route prefix, task hub name) and local.settings.json (Values
become environment variables unless already set), claims the HTTP port, indexes
function_app.py, starts the Durable Task backend (probing an external one once), runs the
app's warmup-triggered functions, and then serves HTTP while driving durable work items,
until it is told to stop (Ctrl-C / SIGTERM). Shutdown stops taking requests, lets running
work finish briefly, and closes the backend cleanly.

Anything that stops devhost from starting (a taken port, a bad app folder or setting, a
warmup function that raises) is a `StartupError` subclass: `__main__` prints its message
as one line and exits non-zero, without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import os
import re
import signal
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn
from durabletask.client import AsyncTaskHubGrpcClient
from starlette.routing import BaseRoute

from devhost.app_index import BUILTIN_PREFIX, HTTP_TRIGGER, WARMUP_TRIGGER, IndexedFunction, load_app
from devhost.backends import Backend, make_backend
from devhost.grpc_limits import MAX_MESSAGE_BYTES
from devhost.http_server import BackendLabel, build_app
from devhost.invoker import Invoker
from devhost.local_model import start_if_unconfigured
from devhost.logs import escape
from devhost.management import PREFIX as MANAGEMENT_PREFIX
from devhost.management import ManagementApi, ManagementKey, ownership_mode
from devhost.monitor import monitor_pages
from devhost.work_items import WorkItemDriver

logger = logging.getLogger("devhost")


class StartupError(Exception):
    """devhost cannot start; the message says why and what to do, on one line."""


class HostConfigError(StartupError):
    """host.json or local.settings.json cannot be used."""


class PortInUseError(StartupError):
    """The HTTP port cannot be listened on."""


class WarmupError(StartupError):
    """A warmup-triggered function raised: the app's configuration is not usable."""


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
            "maxGrpcMessageSizeInBytes": MAX_MESSAGE_BYTES,
        }
    )


def describe_functions(functions: Sequence[IndexedFunction], public_url: str, prefix: str) -> list[str]:
    """One line per function, HTTP triggers first; the SDK's `BuiltIn__*` functions are left out."""
    lines = []
    listed = [f for f in functions if not f.name.startswith(BUILTIN_PREFIX)]
    for function in sorted(listed, key=lambda f: (f.trigger_type != HTTP_TRIGGER, f.name)):
        if function.trigger_type == HTTP_TRIGGER:
            route = "/".join(p for p in (prefix.strip("/"), (function.route or "").strip("/")) if p)
            lines.append(f"{function.name}: [{','.join(function.methods)}] {public_url}/{route}")
        else:
            name = f" ({function.durable_name})" if function.durable_name not in (None, function.name) else ""
            lines.append(f"{function.name}{name}: {function.trigger_type}")
    return lines


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind_socket(host: str, port: int) -> socket.socket:
    """Claim the HTTP port before anything else starts, so a taken port is one clear line."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise PortInUseError(f"cannot listen on {host}:{port}: {error.strerror}; check --host") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is already in use (another devhost or func start?); "
                f"stop it or choose another port with --port"
            ) from None
        if error.errno == errno.EACCES:
            raise PortInUseError(
                f"not allowed to listen on port {port}; choose a port above 1023 with --port"
            ) from None
        raise PortInUseError(
            f"cannot listen on {host}:{port}: {error.strerror}; check --host and --port"
        ) from None
    sock.set_inheritable(True)
    return sock


async def run_warmups(functions: Sequence[IndexedFunction], invoker: Invoker) -> None:
    """Invoke each warmup-triggered function once, as the Functions host does on instance start.
    The first to raise stops devhost with the exception's message: it is how an app says its
    configuration is unusable."""
    for function in functions:
        if function.trigger_type != WARMUP_TRIGGER:
            continue
        try:
            await invoker.warmup(function)
        except Exception as error:
            logger.debug("warmup function %s raised", function.name, exc_info=True)
            message = (
                " ".join(str(error).split())
                or f"the warmup function {function.name!r} raised {type(error).__name__}"
            )
            raise WarmupError(escape(message)) from None
        logger.info("warmup function %s ran", function.name)


class _Server(uvicorn.Server):
    """uvicorn's server minus its signal handling: DevHost owns SIGINT/SIGTERM so that it
    can shut the workers and the backend down before the process exits."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def devhost_pages(client: AsyncTaskHubGrpcClient, prefix: str, key: str | None = None) -> list[BaseRoute]:
    """devhost's own pages under /_devhost: the monitor (devhost/monitor). With ownership on,
    its JSON routes need the management key, like the management API."""
    return monitor_pages(client, api_prefix=prefix, key=key)


class DevHost:
    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self._server: uvicorn.Server | None = None

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "::") else self.options.host
        if ":" in host:
            host = f"[{host}]"
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
        sock = bind_socket(self.options.host, self.options.port)
        local_model = None
        served = False
        try:
            app_dir = self.options.app_dir.resolve()
            applied = apply_local_settings(app_dir)
            if applied:
                logger.info("local.settings.json: set %s", ", ".join(sorted(applied)))
            prefix, task_hub = host_settings(app_dir)
            # Local model hook (devhost/local_model.py): with no model endpoint configured, serve a
            # small model on loopback and set OPENAI_BASE_URL/OPENAI_MODEL before the app is indexed.
            local_model = start_if_unconfigured() if self.options.local_model else None
            functions = load_app(app_dir)
            db_path = self.options.db_path or app_dir / ".devhost" / "taskhub.db"
            backend = make_backend(self.options.backend, db_path=db_path, durability=self.options.durability)
            backend.start()
            try:
                logger.info("backend: %s", backend.description)
                served = await self._serve(sock, functions, backend, task_hub, prefix)
            finally:
                backend.stop()
        finally:
            sock.close()
            if local_model is not None:  # local model hook
                local_model.stop()
            if served:  # a failed start says why in one line, not followed by this
                logger.info("devhost stopped")

    async def _serve(
        self,
        sock: socket.socket,
        functions: list[IndexedFunction],
        backend: Backend,
        task_hub: str,
        prefix: str,
    ) -> bool:
        """Probe, warm up, serve until told to stop; False if warmup stopped the start."""
        problem = await backend.probe()
        if problem is not None:
            logger.warning(
                "the Durable Task backend at %s cannot be reached: %s. %s devhost starts anyway and "
                "keeps trying; until the backend answers, requests that need it get 503.",
                backend.target,
                problem,
                backend.hint,
            )
        invoker = Invoker(
            client_binding(backend, task_hub, self.public_url), str(self.options.app_dir.resolve())
        )
        management_client = AsyncTaskHubGrpcClient(
            host_address=backend.address,
            metadata=list(backend.metadata) or None,
            secure_channel=backend.channel_credentials() is not None,
            # its default logger prints every call at INFO in a format of its own
            logger=logging.getLogger("durabletask.client"),
        )
        try:
            await run_warmups(functions, invoker)
            await self._run(sock, functions, backend, invoker, management_client, prefix)
            return True
        finally:
            await management_client.close()
            invoker.close()

    async def _run(
        self,
        sock: socket.socket,
        functions: list[IndexedFunction],
        backend: Backend,
        invoker: Invoker,
        management_client: AsyncTaskHubGrpcClient,
        prefix: str,
    ) -> None:
        reason = ownership_mode(os.environ)
        key = ManagementKey.generate() if reason else None
        pages = devhost_pages(management_client, prefix, key)
        app = build_app(
            functions,
            invoker,
            prefix,
            own_routes=[ManagementApi(management_client).mount(key, reason or ""), *pages],
            backend=BackendLabel(backend.target, backend.hint),
        )
        driver = WorkItemDriver(
            backend.address,
            functions,
            invoker,
            metadata=backend.metadata,
            credentials=backend.channel_credentials(),
            label=backend.target,
        )
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config)
        self._install_signal_handlers()
        driver_task = asyncio.create_task(driver.run())
        server_task = asyncio.create_task(self._server.serve(sockets=[sock]))
        try:
            while not self._server.started:
                if server_task.done():
                    break
                await asyncio.sleep(0.02)
            if self._server.started:
                for line in describe_functions(functions, self.public_url, prefix):
                    logger.info("function %s", line)
                management_url = f"{self.public_url}{MANAGEMENT_PREFIX}"
                if key is not None:
                    logger.info(
                        "management API %s needs this key (as ?code= or x-functions-key) because of %s; "
                        "it is shown only here: %s",
                        management_url,
                        reason,
                        key,
                    )
                else:
                    logger.info("management API: %s", management_url)
                    if not _is_loopback(self.options.host):
                        logger.warning(
                            "--host %s: the management API and the monitor are open to anyone who "
                            "can reach this port (as with func start); keep devhost on 127.0.0.1 "
                            "unless you mean it",
                            self.options.host,
                        )
                if pages:
                    logger.info("monitor: %s/_devhost/", self.public_url)
                logger.info("devhost ready on %s (Ctrl-C to stop)", self.public_url)
            await server_task
        finally:
            await driver.stop()
            driver_task.cancel()
            await asyncio.gather(driver_task, return_exceptions=True)
