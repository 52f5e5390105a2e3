"""A full disk or a read-only database: roll back, say so once, answer with a clear status.

Why this module exists: when the disk fills up or the database becomes read-only in the
middle of a turn, the hub must neither half-apply a step nor lose the work. ``Storage``
rolls the transaction back and raises ``StorageUnavailable``; the hub keeps the work item
for redelivery (after a pause, so a worker is not handed the same doomed step in a tight
loop); the servicer answers RESOURCE_EXHAUSTED (full) or UNAVAILABLE (read-only) instead
of an opaque UNKNOWN; and the log gets one clear line naming the condition and the file
when it begins, and one when writes succeed again.
"""

from __future__ import annotations

import logging
import pathlib
import sqlite3
from collections.abc import Callable
from typing import Any, Literal

import grpc

log = logging.getLogger("devhost.sqlite_hub")

Fault = Literal["full", "read-only"]

_SQLITE_READONLY = 8
_SQLITE_FULL = 13
# Work whose completion could not be stored is handed out again after this pause.
STORAGE_RETRY_SECONDS = 1.0


class StorageUnavailable(Exception):
    """A write was rolled back because the database is full or read-only."""

    def __init__(self, fault: Fault, path: pathlib.Path) -> None:
        self.fault = fault
        self.path = path
        if fault == "full":
            what = "the disk is full (or the database reached its size limit)"
        else:
            what = "the database is read-only"
        super().__init__(f"task hub database {path}: {what}; the change was rolled back and will be retried")

    @property
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.RESOURCE_EXHAUSTED if self.fault == "full" else grpc.StatusCode.UNAVAILABLE


def classify(error: BaseException) -> Fault | None:
    """Which storage fault an SQLite error is, if any."""
    if not isinstance(error, sqlite3.Error):
        return None
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = int(code) & 0xFF  # extended codes (e.g. SQLITE_READONLY_DBMOVED) keep the primary low byte
    if primary == _SQLITE_FULL:
        return "full"
    if primary == _SQLITE_READONLY:
        return "read-only"
    return None


class FaultLog:
    """Logs a storage fault once when it begins and once when writes succeed again."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.current: Fault | None = None

    def failed(self, fault: Fault) -> StorageUnavailable:
        error = StorageUnavailable(fault, self.path)
        if fault != self.current:
            log.error("%s", error)
            self.current = fault
        return error

    def succeeded(self) -> None:
        if self.current is not None:
            log.info("task hub database %s accepts writes again", self.path)
            self.current = None


class StorageFaultInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Turns ``StorageUnavailable`` from any unary RPC into its gRPC status."""

    def intercept_service(
        self, continuation: Callable[[Any], grpc.RpcMethodHandler | None], handler_call_details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return inner(request, context)
            except StorageUnavailable as error:
                context.abort(error.code, str(error))
                raise AssertionError("unreachable") from error  # abort always raises

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
