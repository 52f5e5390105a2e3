"""Invokes indexed functions the way the Functions host and Python worker do.

Each trigger gets its payload in the host's wire form: HTTP functions a
`func.HttpRequest`; warmup functions a `func.WarmUpContext`; orchestrators and entities
a context whose body is the base64 of an encoded `OrchestratorRequest` /
`EntityBatchRequest` (they answer with the base64 of the response); activities their
JSON input decoded by the durable activity converter. A durable client parameter
receives the binding JSON. Synchronous functions run on a thread pool so they never
block the event loop; coroutine functions run on it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
from azure.durable_functions.internal.converters import ActivityTriggerConverter
from azure.functions import meta
from azure.functions._abc import RetryContext, TraceContext
from azure.functions._durable_functions import EntityContext, OrchestrationContext
from azure.functions.warmup import WarmUpContext

from devhost.app_index import IndexedFunction


class _RetryContext(RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class _TraceContext(TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class InvocationContext(func.Context):
    """The `func.Context` a function may declare as its `context` parameter."""

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._storage = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._storage

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> RetryContext:
        return _RetryContext()


class Invoker:
    """Calls functions with host-shaped arguments; owns the pool for sync functions."""

    def __init__(self, client_binding: str, app_dir: str, max_workers: int = 16) -> None:
        self._client_binding = client_binding
        self._app_dir = app_dir
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="devhost-fn")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _call(self, function: IndexedFunction, trigger_value: Any) -> Any:
        kwargs: dict[str, Any] = {function.trigger_param: trigger_value}
        kwargs.update({name: self._client_binding for name in function.client_params})
        kwargs.update({name: None for name in function.extra_params})
        if function.accepts_context:
            kwargs["context"] = InvocationContext(function.name, self._app_dir)
        if function.is_async:
            return await function.user_function(**kwargs)
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, function.user_function, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    async def http(self, function: IndexedFunction, request: func.HttpRequest) -> func.HttpResponse:
        result = await self._call(function, request)
        if isinstance(result, func.HttpResponse):
            return result
        if result is None:
            return func.HttpResponse(status_code=204)
        if isinstance(result, str | bytes):
            return func.HttpResponse(result)
        raise TypeError(
            f"HTTP function {function.name!r} returned {type(result).__name__}, not an HttpResponse"
        )

    async def warmup(self, function: IndexedFunction) -> None:
        """Run a warmup-triggered function, as the Functions host does when an instance starts."""
        await self._call(function, WarmUpContext())

    async def orchestrator(self, function: IndexedFunction, encoded_request: str) -> str:
        return str(await self._call(function, OrchestrationContext(encoded_request)))

    async def entity(self, function: IndexedFunction, encoded_request: str) -> str:
        return str(await self._call(function, EntityContext(encoded_request)))

    async def activity(self, function: IndexedFunction, input_json: str | None) -> str | None:
        """Run an activity; returns its JSON-encoded result (None for no result)."""
        value = (
            None
            if input_json is None
            else ActivityTriggerConverter.decode(
                meta.Datum(type="json", value=input_json), trigger_metadata=None
            )
        )
        result = await self._call(function, value)
        if result is None:
            return None
        encoded: Any = ActivityTriggerConverter.encode(result, expected_type=None).value
        return str(encoded)
