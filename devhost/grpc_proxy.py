"""A loopback gRPC forwarder in front of an external Durable Task backend.

The durable client binding hands the app an insecure `rpcBaseUrl`, exactly as the
Functions host does. To reach a Durable Task Scheduler over TLS with an Entra ID token,
devhost listens on 127.0.0.1 and forwards every TaskHubSidecarService call, unchanged
bytes in both directions, to the real endpoint with the channel credentials and the
`taskhub` header the connection string asks for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb

from devhost.grpc_limits import GRPC_OPTIONS

logger = logging.getLogger("devhost.proxy")

SERVICE = pb.DESCRIPTOR.services_by_name["TaskHubSidecarService"]
FORWARDED_HEADERS = ("x-user-agent",)


class SidecarProxy:
    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None,
        metadata: tuple[tuple[str, str], ...],
        host: str = "127.0.0.1",
    ) -> None:
        self._target = target
        self._credentials = credentials
        self._metadata = metadata
        self._host = host
        self._server: grpc.Server | None = None
        self._channel: grpc.Channel | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"{self._host}:{self.port}"

    def start(self) -> None:
        options = list(GRPC_OPTIONS)
        if self._credentials is not None:
            self._channel = grpc.secure_channel(self._target, self._credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(self._target, options=options)
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for method in SERVICE.methods:
            path = f"/{SERVICE.full_name}/{method.name}"
            if method.server_streaming:
                handlers[method.name] = grpc.unary_stream_rpc_method_handler(self._stream(path))
            else:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(self._unary(path))
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="devhost-proxy"), options=options
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
        self.port = server.add_insecure_port(f"{self._host}:0")
        server.start()
        self._server = server
        logger.info("forwarding %s to %s", self.address, self._target)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=1).wait()
            self._server = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _outgoing(self, context: grpc.ServicerContext) -> list[tuple[str, str]]:
        own = {k for k, _ in self._metadata}
        passed = [(k, v) for k, v in context.invocation_metadata() if k in FORWARDED_HEADERS and k not in own]
        return [*passed, *self._metadata]

    def _abort(self, context: grpc.ServicerContext, error: grpc.RpcError) -> None:
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNAVAILABLE
        details = error.details() if hasattr(error, "details") else str(error)
        context.abort(code, details or "the external backend failed")

    def _unary(self, path: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
            assert self._channel is not None
            call = self._channel.unary_unary(path)
            try:
                future = call.future(request, metadata=self._outgoing(context))
                context.add_callback(future.cancel)  # the caller gave up: stop the remote call too
                response: bytes = future.result()
                return response
            except grpc.RpcError as error:
                self._abort(context, error)
                raise

        return forward

    def _stream(self, path: str) -> Callable[[bytes, grpc.ServicerContext], Iterator[bytes]]:
        def forward(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            assert self._channel is not None
            call: Any = self._channel.unary_stream(path)(request, metadata=self._outgoing(context))
            context.add_callback(call.cancel)
            try:
                yield from call
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.CANCELLED:
                    self._abort(context, error)

        return forward
