"""An app-level azure.durable_functions entity run by devhost's own work-item driver.

Tests use it to check the hub against the path the app really takes (the Functions-style
invoker and ``devhost.work_items``), not only against durabletask's own worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import azure.durable_functions as df
from durabletask.client import TaskHubGrpcClient
from durabletask.grpc_options import GrpcChannelOptions
from durabletask.testing import create_test_backend

from devhost.app_index import index_functions
from devhost.grpc_limits import MAX_MESSAGE_BYTES
from devhost.invoker import Invoker
from devhost.sqlite_hub import SqliteSidecar
from devhost.work_items import WorkItemDriver
from tests.sqlite_hub.conftest import free_port

notes_app = df.Blueprint()


# The decorator's declared type (task.Entity: a (context, input) callable) rejects the legacy
# one-argument DurableEntityContext style this entity deliberately uses; the runtime accepts it.
@notes_app.entity_trigger(context_name="context", entity_name="notes")  # type: ignore[arg-type]
def notes(context: df.DurableEntityContext) -> None:
    """A v1-style azure.durable_functions entity: ``add`` appends, ``clear`` deletes it."""
    if context.operation_name == "add":
        context.set_state([*(context.get_state(list) or []), context.get_input()])
    elif context.operation_name == "clear":
        context.destruct_on_exit()
    context.set_result(context.get_state(list))


@dataclass(frozen=True)
class AppBackend:
    client: TaskHubGrpcClient
    is_sqlite: bool
    #: the backend's gRPC address, for clients of the test's own (an async one)
    address: str


@contextlib.contextmanager
def app_backend(
    kind: str, directory: pathlib.Path, blueprints: Sequence[df.Blueprint] = (notes_app,)
) -> Iterator[AppBackend]:
    """A backend whose only worker is devhost's driver running `blueprints`' functions."""
    sidecar: SqliteSidecar | None = None
    backend: Any = None
    if kind == "sqlite":
        sidecar = SqliteSidecar(directory / "taskhub.db")
        sidecar.start()
        address = sidecar.address
    else:
        port = free_port()
        backend = create_test_backend(port=port)
        address = f"127.0.0.1:{port}"
    app = df.DFApp()
    for blueprint in blueprints:
        app.register_functions(blueprint)
    # functions with a durable client binding reach this backend through it
    invoker = Invoker(json.dumps({"taskHubName": "test", "rpcBaseUrl": address}), str(directory))
    driver = WorkItemDriver(address, index_functions(app), invoker)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(driver.run(),), daemon=True)
    thread.start()
    big = GrpcChannelOptions(
        max_receive_message_length=MAX_MESSAGE_BYTES, max_send_message_length=MAX_MESSAGE_BYTES
    )
    client = TaskHubGrpcClient(host_address=address, channel_options=big)
    try:
        yield AppBackend(client, sidecar is not None, address)
    finally:
        client.close()
        asyncio.run_coroutine_threadsafe(driver.stop(grace=5), loop).result(timeout=15)
        thread.join(timeout=15)
        loop.close()
        invoker.close()
        if sidecar is not None:
            sidecar.stop()
        else:
            backend.stop()
            backend.reset()
