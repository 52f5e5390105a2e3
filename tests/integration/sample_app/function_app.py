"""A small app that exercises devhost's host behaviour (not part of the product)."""

import asyncio
import os
import threading
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.functions.warmup import WarmUpContext
from durabletask.entities import EntityContext, EntityInstanceId
from durabletask.task import Task

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
barrier = threading.Barrier(3, timeout=10)

# The orchestrators below deliberately use the legacy one-argument DurableOrchestrationContext
# style, which azure-functions-durable still runs but its decorator's declared type
# (task.Orchestrator: a (context, input) callable) rejects; hence the [arg-type] ignores.


@app.route(route="setting", methods=["GET"])
def setting(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(os.environ.get("SAMPLE_SETTING", "unset"))


@app.route(route="echo/{name}/{count:int}", methods=["GET", "POST"])
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "method": req.method,
        "name": req.route_params["name"],
        "count": int(req.route_params["count"]),
        "q": req.params.get("q"),
        "header": req.headers.get("x-sample"),
        "body": req.get_body().decode(),
    }
    return func.HttpResponse(
        __import__("json").dumps(body), mimetype="application/json", headers={"X-Out": "1"}
    )


@app.route(route="crash", methods=["GET"])
def crash(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("sample crash")


@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    instance_id = await client.schedule_new_orchestration(
        req.route_params["name"], input=req.params.get("input"), instance_id=req.params.get("id")
    )
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")  # type: ignore[arg-type]  # legacy context style
def fan_out(context: df.DurableOrchestrationContext) -> Generator[Task[Any], Any, dict[str, Any]]:
    tasks = [context.call_activity("meet", i) for i in range(3)]
    results = yield context.task_all(tasks)
    async_result = yield context.call_activity("async_double", 21)
    try:
        yield context.call_activity("explode", None)
    except Exception as error:
        return {"met": sorted(results), "double": async_result, "failure": str(error)}
    return {"unexpected": True}


@app.orchestration_trigger(context_name="context")  # type: ignore[arg-type]  # legacy context style
def waits_forever(context: df.DurableOrchestrationContext) -> Generator[Task[Any], Any, Any]:
    value = yield context.wait_for_external_event("go")
    return value


@app.activity_trigger(input_name="index")
def meet(index: int) -> int:
    barrier.wait()  # only returns when three activities run at the same time
    return index


@app.activity_trigger(input_name="value")
async def async_double(value: int) -> int:
    await asyncio.sleep(0.01)
    return value * 2


@app.activity_trigger(input_name="value")
def explode(value: None) -> None:
    raise ValueError("activity exploded")


@app.orchestration_trigger(context_name="context")  # type: ignore[arg-type]  # legacy context style
def sleeper(context: df.DurableOrchestrationContext) -> Generator[Task[Any], Any, dict[str, str]]:
    seconds = context.get_input() or 3
    fire_at = context.current_utc_datetime + __import__("datetime").timedelta(seconds=seconds)
    yield context.create_timer(fire_at)
    return {"fire_at": fire_at.isoformat(), "woke_at": context.current_utc_datetime.isoformat()}


@app.route(route="sleep/{seconds:int}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def sleep(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    instance_id = await client.schedule_new_orchestration("sleeper", input=int(req.route_params["seconds"]))
    return client.create_check_status_response(req, instance_id)


@app.warm_up_trigger(arg_name="warmup_context")
def warmup(warmup_context: WarmUpContext) -> None:
    """Runs once when the host starts; a bad setting stops the host (devhost exits with this message)."""
    value = os.environ.get("SAMPLE_TIMEOUT_SECONDS")
    if value is not None:
        try:
            float(value)
        except ValueError:
            raise ValueError(f"SAMPLE_TIMEOUT_SECONDS={value!r} is not a float; set a number.") from None


@app.entity_trigger(context_name="context")
def counter(context: EntityContext, amount: Any) -> Any:
    state = context.get_state() or 0
    match context.operation.lower():
        case "add":
            context.set_state(state + int(amount))
        case "reset":
            context.set_state(0)
        case "delete":
            context.set_state(None)
    return state


@app.route(route="count/{key}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def count(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    """Starts `counts`, which calls the counter entity."""
    instance_id = await client.schedule_new_orchestration(
        "counts", input=req.route_params["key"], instance_id=req.params.get("id")
    )
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")  # type: ignore[arg-type]  # legacy context style
def counts(context: df.DurableOrchestrationContext) -> Generator[Task[Any], Any, dict[str, Any]]:
    key = context.get_input()
    yield context.call_entity(EntityInstanceId("counter", key), "add", 5)
    total = yield context.call_activity("async_double", 1)
    return {"key": key, "double": total}


failed_once: set[str] = set()


@app.activity_trigger(input_name="instance_id")
def flaky(instance_id: str) -> str:
    """Fails the first time for each instance, then succeeds (for rewind)."""
    if instance_id not in failed_once:
        failed_once.add(instance_id)
        raise RuntimeError("flaky failed once")
    return "recovered"


@app.orchestration_trigger(context_name="context")  # type: ignore[arg-type]  # legacy context style
def flaky_chain(context: df.DurableOrchestrationContext) -> Generator[Task[Any], Any, Any]:
    return (yield context.call_activity("flaky", context.instance_id))
