"""devhost's work-item driver hands entity work to the app in both protocol versions.

A backend may send an `EntityBatchRequest` (entityRequest) or an `EntityRequest`
(entityRequestV2). Both must reach the app's entity as the batch the Functions host
passes, give the same results and state, and the V2 completion must carry the operation
infos that tell the backend where each result goes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import azure.durable_functions as df
from durabletask.entities import EntityContext
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2

from devhost.app_index import index_functions
from devhost.invoker import Invoker
from devhost.work_items import WorkItemDriver

ENTITY_ID = "@tally@t-1"
OPERATIONS = [("add", 2), ("add", 3), ("get", None), ("explode", None)]


def tally_app() -> df.DFApp:
    """An app with one entity (a new app object each time: an app is indexed only once)."""
    app = df.DFApp()

    @app.entity_trigger(context_name="context", entity_name="tally")
    def tally(context: EntityContext, amount: Any) -> Any:
        state = context.get_state() or {"total": 0}
        match context.operation:
            case "add":
                state = {"total": state["total"] + amount}
                context.set_state(state)
                return state
            case "get":
                return state
            case other:
                raise ValueError(f"tally has no operation {other!r}")

    return app


class RecordingStub:
    def __init__(self) -> None:
        self.completed: list[pb.EntityBatchResult] = []

    async def CompleteEntityTask(self, result: pb.EntityBatchResult, metadata: Any = ()) -> None:
        self.completed.append(result)


def v1_item() -> pb.WorkItem:
    batch = pb.EntityBatchRequest(instanceId=ENTITY_ID)
    for index, (name, value) in enumerate(OPERATIONS):
        batch.operations.append(
            pb.OperationRequest(
                requestId=f"r{index}", operation=name, input=wrappers_pb2.StringValue(value=json.dumps(value))
            )
        )
    return pb.WorkItem(completionToken="v1", entityRequest=batch)


def v2_item() -> pb.WorkItem:
    request = pb.EntityRequest(instanceId=ENTITY_ID)
    for index, (name, value) in enumerate(OPERATIONS):
        called = pb.EntityOperationCalledEvent(
            requestId=f"r{index}",
            operation=name,
            input=wrappers_pb2.StringValue(value=json.dumps(value)),
            parentInstanceId=wrappers_pb2.StringValue(value="orchestration-1"),
            parentExecutionId=wrappers_pb2.StringValue(value="exec-1"),
        )
        request.operationRequests.append(pb.HistoryEvent(eventId=-1, entityOperationCalled=called))
    return pb.WorkItem(completionToken="v2", entityRequestV2=request)


async def run(item: pb.WorkItem) -> pb.EntityBatchResult:
    invoker = Invoker("{}", ".")
    driver = WorkItemDriver("127.0.0.1:1", index_functions(tally_app()), invoker)
    stub = RecordingStub()
    try:
        driver._dispatch(item, stub)  # type: ignore[arg-type]
        await driver.stop(grace=10)
    finally:
        invoker.close()
    assert len(stub.completed) == 1
    return stub.completed[0]


def outcomes(result: pb.EntityBatchResult) -> list[Any]:
    return [
        json.loads(r.success.result.value) if r.HasField("success") else r.failure.failureDetails.errorType
        for r in result.results
    ]


def test_both_entity_protocol_versions_give_the_same_outcome() -> None:
    first, second = asyncio.run(run(v1_item())), asyncio.run(run(v2_item()))
    assert (
        outcomes(first)
        == outcomes(second)
        == [{"total": 2}, {"total": 5}, {"total": 5}, "builtins.ValueError"]
    )
    assert first.entityState.value == second.entityState.value
    assert json.loads(first.entityState.value) == {"total": 5}
    assert (first.completionToken, second.completionToken) == ("v1", "v2")
    assert list(first.operationInfos) == []
    assert [(i.requestId, i.responseDestination.instanceId) for i in second.operationInfos] == [
        (f"r{i}", "orchestration-1") for i in range(len(OPERATIONS))
    ]


def test_an_unknown_entity_fails_the_batch_without_stopping_the_driver() -> None:
    item = v1_item()
    item.entityRequest.instanceId = "@nosuchentity@k"
    result = asyncio.run(run(item))
    assert "not registered" in result.failureDetails.errorMessage
