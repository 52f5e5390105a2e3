"""devhost served from a thread of the test process, for mutation runs.

mutmut sees only code that runs in its own process, and the integration tests drive the
app through `python -m devhost` in another one: with `DEVHOST_IN_PROCESS=1` the `devhost`
fixture starts `InProcessDevhost` instead, so the HTTP API, orchestrations, activities and
entities a test reaches run here, still behind real HTTP on loopback. It has the same
surface as `DevhostProcess` except `kill` (a thread cannot be SIGKILLed). Settings are
read from the process environment, so two in-process hosts with different settings must
not serve at the same time: tests that kill devhost, or that run a second host with other
settings while the module's host serves, are not for this mode.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest

from devhost.host import DevHost, HostOptions
from devhost.logs import SafeFormatter
from tests.integration.harness import STARTED_LOGS, DevhostProcess

IN_PROCESS = os.environ.get("DEVHOST_IN_PROCESS") == "1"


def new_devhost(log_path: Path, **options: Any) -> DevhostProcess:
    """A `DevhostProcess`, or with DEVHOST_IN_PROCESS=1 an `InProcessDevhost` (same surface)."""
    host_class = InProcessDevhost if IN_PROCESS else DevhostProcess
    return host_class(log_path, **options)


def _reset_app_caches() -> None:
    """Settings and the model client are built once per process; a new host re-reads them."""
    from agent.openai_model import reset_model_client
    from agent.settings import get_settings

    get_settings.cache_clear()
    reset_model_client()


class InProcessDevhost(DevhostProcess):
    def __init__(self, log_path: Path, *, env: dict[str, str] | None = None, **options: Any) -> None:
        super().__init__(log_path, env=env, **options)
        self.env = dict(env or {})  # only what this host sets on top of the process environment
        self._host: DevHost | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._handler: logging.Handler | None = None
        self._saved_env: dict[str, str | None] = {}
        self._failure: BaseException | None = None

    def start(self, timeout: float = 30.0) -> InProcessDevhost:
        durability = "normal"
        args = list(self.extra_args)
        while args:
            arg = args.pop(0)
            if arg == "--durability" and args:
                durability = args.pop(0)
            elif arg != "--no-local-model":  # the in-process host never starts the local model
                pytest.skip(f"devhost option {arg} is not supported in process")
        self._saved_env = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        _reset_app_caches()
        if self.log_path not in STARTED_LOGS:
            STARTED_LOGS.append(self.log_path)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._handler = logging.FileHandler(self.log_path)
        self._handler.setFormatter(SafeFormatter())
        root = logging.getLogger()
        root.addHandler(self._handler)
        root.setLevel(logging.INFO)
        for noisy in ("azure.durable_functions", "azure.functions.DurableFunctions", "durabletask"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        options = HostOptions(
            app_dir=self.app_dir,
            port=self.port,
            backend=self.backend,
            db_path=self.db_path,
            durability=cast(Any, durability),
            local_model=False,
        )
        self._host = DevHost(options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="devhost-in-process", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                self._restore()
                raise RuntimeError(f"in-process devhost stopped: {self._failure!r}\n{self.log()}")
            if "devhost ready on" in self.log()[offset:]:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"in-process devhost did not become ready in {timeout}s:\n{self.log()}")

    def _serve(self) -> None:
        assert self._loop is not None and self._host is not None
        try:
            self._loop.run_until_complete(self._host.serve())
        except BaseException as error:  # reported by start() or stop()
            self._failure = error
        finally:
            self._loop.close()

    def stop(self, timeout: float = 20.0) -> int:
        """Ask the host to stop as Ctrl-C would; 0 when it stopped cleanly."""
        if self._thread is None or self._host is None or self._loop is None:
            return 0
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._host.request_stop)
            self._thread.join(timeout)
        alive = self._thread.is_alive()
        self._restore()
        if alive:
            raise RuntimeError(f"in-process devhost did not stop in {timeout}s:\n{self.log()}")
        return 0 if self._failure is None else 1

    def _restore(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}
        _reset_app_caches()

    def kill(self) -> None:
        pytest.skip("an in-process devhost cannot be killed")
