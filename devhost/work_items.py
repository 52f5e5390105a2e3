"""Drives orchestrations, activities and entities from a Durable Task sidecar.

devhost plays the Functions host's Durable extension: it opens the `GetWorkItems` stream
of a TaskHubSidecarService, hands each work item to the app's function in the host's wire
form (see invoker.py), and completes it with the result. A failing function never stops
the loop: activity and entity failures are reported as task failures, a missing function
fails just that orchestration, and a lost connection is retried with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import traceback
from collections.abc import Sequence
from typing import Any

import grpc
from durabletask.internal import helpers
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal.orchestrator_service_pb2_grpc import TaskHubSidecarServiceStub
from google.protobuf import wrappers_pb2

from devhost.app_index import ACTIVITY_TRIGGER, ENTITY_TRIGGER, ORCHESTRATION_TRIGGER, IndexedFunction
from devhost.grpc_limits import GRPC_OPTIONS
from devhost.invoker import Invoker

logger = logging.getLogger("devhost.work")

MAX_CONCURRENT_ACTIVITIES = 16
MAX_CONCURRENT_ORCHESTRATIONS = 32


def failure(error: BaseException | str, error_type: str | None = None) -> pb.TaskFailureDetails:
    if isinstance(error, BaseException):
        return pb.TaskFailureDetails(
            errorType=error_type or type(error).__name__,
            errorMessage=str(error),
            stackTrace=wrappers_pb2.StringValue(value="".join(traceback.format_exception(error))),
        )
    return pb.TaskFailureDetails(errorType=error_type or "FunctionNotFound", errorMessage=error)


def _orchestration_name(request: pb.OrchestratorRequest) -> str:
    for event in [*request.pastEvents, *request.newEvents]:
        if event.HasField("executionStarted"):
            return str(event.executionStarted.name)
    return ""


class WorkItemDriver:
    """Consumes the sidecar's work-item stream until `stop()`."""

    def __init__(
        self,
        address: str,
        functions: Sequence[IndexedFunction],
        invoker: Invoker,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        credentials: grpc.ChannelCredentials | None = None,
        label: str | None = None,
    ) -> None:
        self._address = address
        self._label = label or address  # how the log names the backend (not a proxy's address)
        self._metadata = tuple(metadata)
        self._credentials = credentials
        self._invoker = invoker
        self._orchestrators = {
            f.durable_name: f for f in functions if f.trigger_type == ORCHESTRATION_TRIGGER
        }
        self._activities = {f.durable_name: f for f in functions if f.trigger_type == ACTIVITY_TRIGGER}
        self._entities = {
            str(f.durable_name).lower(): f for f in functions if f.trigger_type == ENTITY_TRIGGER
        }
        self._activity_slots = asyncio.Semaphore(MAX_CONCURRENT_ACTIVITIES)
        self._orchestration_slots = asyncio.Semaphore(MAX_CONCURRENT_ORCHESTRATIONS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._grace = 5.0
        self._connected = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None

    def _open_channel(self) -> grpc.aio.Channel:
        options = list(GRPC_OPTIONS)
        if self._credentials is not None:
            return grpc.aio.secure_channel(self._address, self._credentials, options=options)
        return grpc.aio.insecure_channel(self._address, options=options)

    async def run(self) -> None:
        delay = 0.2
        while not self._stopping.is_set():
            self._channel = self._open_channel()
            stub = TaskHubSidecarServiceStub(self._channel)  # type: ignore[no-untyped-call]
            try:
                stream = stub.GetWorkItems(
                    pb.GetWorkItemsRequest(
                        maxConcurrentOrchestrationWorkItems=MAX_CONCURRENT_ORCHESTRATIONS,
                        maxConcurrentActivityWorkItems=MAX_CONCURRENT_ACTIVITIES,
                    ),
                    metadata=self._metadata,
                )
                stop = asyncio.ensure_future(self._stopping.wait())
                reader = aiter(stream)
                while True:
                    next_item = asyncio.ensure_future(anext(reader))
                    done, _ = await asyncio.wait({next_item, stop}, return_when=asyncio.FIRST_COMPLETED)
                    if stop in done:
                        next_item.cancel()
                        stream.cancel()
                        break
                    item = next_item.result()
                    if not self._connected.is_set():
                        logger.info("connected to the Durable Task backend at %s", self._label)
                        self._connected.set()
                    delay = 0.2
                    self._dispatch(item, stub)
                stop.cancel()
            except StopAsyncIteration:
                logger.warning("the backend closed the work-item stream; reconnecting")
            except grpc.aio.AioRpcError as error:
                if self._stopping.is_set():
                    break
                if self._connected.is_set():
                    logger.warning(
                        "lost the Durable Task backend at %s (%s); reconnecting",
                        self._label,
                        error.code().name,
                    )
                elif delay == 0.2:
                    logger.warning(
                        "cannot reach the Durable Task backend at %s (%s); retrying until it answers",
                        self._label,
                        error.code().name,
                    )
            finally:
                self._connected.clear()
                if self._stopping.is_set() and self._tasks:
                    # Let running work complete over this channel before closing it.
                    await asyncio.wait(self._tasks, timeout=self._grace)
                await self._channel.close(grace=None)
            if not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                delay = min(delay * 2, 5.0)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking work; running work gets `grace` seconds to finish and complete."""
        self._grace = grace
        self._stopping.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()

    def _dispatch(self, item: pb.WorkItem, stub: TaskHubSidecarServiceStub) -> None:
        kind = item.WhichOneof("request")
        token = item.completionToken
        coroutine: Any
        if kind == "orchestratorRequest":
            coroutine = self._orchestrate(item.orchestratorRequest, token, stub)
        elif kind == "activityRequest":
            coroutine = self._activity(item.activityRequest, token, stub)
        elif kind == "entityRequest":
            coroutine = self._entity(item.entityRequest, [], token, stub)
        elif kind == "entityRequestV2":
            batch, infos = helpers.convert_to_entity_batch_request(item.entityRequestV2)
            coroutine = self._entity(batch, infos, token, stub)
        else:
            return  # health pings and unknown kinds need no answer
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _orchestrate(
        self, request: pb.OrchestratorRequest, token: str, stub: TaskHubSidecarServiceStub
    ) -> None:
        name = _orchestration_name(request)
        function = self._orchestrators.get(name)
        async with self._orchestration_slots:
            if function is None:
                response = self._failed_orchestration(
                    request, f"orchestrator {name!r} is not registered in this app"
                )
            else:
                try:
                    encoded = base64.b64encode(request.SerializeToString()).decode()
                    response = pb.OrchestratorResponse()
                    response.ParseFromString(
                        base64.b64decode(await self._invoker.orchestrator(function, encoded))
                    )
                except Exception as error:
                    logger.exception("orchestrator %s (%s) crashed", name, request.instanceId)
                    response = self._failed_orchestration(request, error)
            response.instanceId = request.instanceId
            response.completionToken = token
            await self._complete(
                stub.CompleteOrchestratorTask, response, f"orchestration {request.instanceId}"
            )

    @staticmethod
    def _failed_orchestration(
        request: pb.OrchestratorRequest, error: BaseException | str
    ) -> pb.OrchestratorResponse:
        action = pb.OrchestratorAction(
            completeOrchestration=pb.CompleteOrchestrationAction(
                orchestrationStatus=pb.ORCHESTRATION_STATUS_FAILED, failureDetails=failure(error)
            )
        )
        return pb.OrchestratorResponse(instanceId=request.instanceId, actions=[action])

    async def _activity(
        self, request: pb.ActivityRequest, token: str, stub: TaskHubSidecarServiceStub
    ) -> None:
        instance_id = request.orchestrationInstance.instanceId
        function = self._activities.get(request.name)
        response = pb.ActivityResponse(instanceId=instance_id, taskId=request.taskId, completionToken=token)
        async with self._activity_slots:
            if function is None:
                response.failureDetails.CopyFrom(
                    failure(f"activity {request.name!r} is not registered in this app")
                )
            else:
                try:
                    input_json = request.input.value if request.HasField("input") else None
                    result = await self._invoker.activity(function, input_json)
                    if result is not None:
                        response.result.value = result
                except Exception as error:  # noqa: BLE001 - reported to the orchestration as a task failure
                    logger.warning(
                        "activity %s for %s failed: %s: %s",
                        request.name,
                        instance_id,
                        type(error).__name__,
                        error,
                    )
                    response.failureDetails.CopyFrom(failure(error))
        await self._complete(stub.CompleteActivityTask, response, f"activity {request.name} of {instance_id}")

    async def _entity(
        self,
        request: pb.EntityBatchRequest,
        infos: list[pb.OperationInfo],
        token: str,
        stub: TaskHubSidecarServiceStub,
    ) -> None:
        name = request.instanceId.split("@")[1].lower() if request.instanceId.count("@") >= 2 else ""
        function = self._entities.get(name)
        if function is None:
            result = pb.EntityBatchResult(
                failureDetails=failure(f"entity {name!r} is not registered in this app")
            )
        else:
            try:
                encoded = base64.b64encode(request.SerializeToString()).decode()
                result = pb.EntityBatchResult()
                result.ParseFromString(base64.b64decode(await self._invoker.entity(function, encoded)))
            except Exception as error:
                logger.exception("entity %s crashed", request.instanceId)
                result = pb.EntityBatchResult(failureDetails=failure(error))
        result.completionToken = token
        del result.operationInfos[:]
        result.operationInfos.extend(infos)
        await self._complete(stub.CompleteEntityTask, result, f"entity {request.instanceId}")

    async def _complete(self, method: Any, message: Any, what: str) -> None:
        try:
            await method(message, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            # The backend hands the work item out again (lease expiry or reconnect).
            logger.warning("could not complete %s (%s: %s)", what, error.code().name, error.details())
        except grpc.aio.UsageError:
            # The stream dropped and its channel was closed while this work ran; the backend
            # hands the work item out again on the next stream.
            logger.warning("could not complete %s: the connection to the backend was closed", what)
