"""Raw-gRPC helpers for the SQLite hub's protocol tests."""

from __future__ import annotations

import queue
import threading
from typing import Any

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2

TIMEOUT = 10


class RawStream:
    """A GetWorkItems stream read on a background thread."""

    def __init__(self, stub: Any, request: Any | None = None) -> None:
        self.call = stub.GetWorkItems(request or pb.GetWorkItemsRequest())
        self.items: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for item in self.call:
                if not item.HasField("healthPing"):
                    self.items.put(item)
        except grpc.RpcError:
            pass

    def next(self, timeout: float = TIMEOUT) -> Any:
        return self.items.get(timeout=timeout)

    def empty_for(self, seconds: float) -> bool:
        try:
            self.items.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(timeout=5)


def start(stub: Any, iid: str, name: str = "orch") -> None:
    stub.StartInstance(
        pb.CreateInstanceRequest(instanceId=iid, name=name, input=wrappers_pb2.StringValue(value="1"))
    )


def complete_action(result: str = '"done"') -> Any:
    return pb.OrchestratorAction(
        id=-1,
        completeOrchestration=pb.CompleteOrchestrationAction(
            orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED,
            result=wrappers_pb2.StringValue(value=result),
        ),
    )


def respond(stub: Any, iid: str, item: Any, *actions: Any) -> None:
    """Completes the orchestration work item `item` of `iid` with `actions`."""
    stub.CompleteOrchestratorTask(
        pb.OrchestratorResponse(instanceId=iid, completionToken=item.completionToken, actions=list(actions))
    )


def complete_activity(stub: Any, item: Any, result: str | None = None) -> None:
    """Completes the activity work item `item` with `result` (JSON text)."""
    request = item.activityRequest
    stub.CompleteActivityTask(
        pb.ActivityResponse(
            instanceId=request.orchestrationInstance.instanceId,
            taskId=request.taskId,
            completionToken=item.completionToken,
            result=wrappers_pb2.StringValue(value=result) if result is not None else None,
        )
    )


def status(stub: Any, iid: str) -> int:
    return int(stub.GetInstance(pb.GetInstanceRequest(instanceId=iid)).orchestrationState.orchestrationStatus)
