"""The Durable Functions management API devhost serves under /runtime/webhooks/durabletask,
checked against the shapes and rules of Durable Functions' HTTP API, on both local backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.devhost.conftest import sample_host, unique
from tests.integration.harness import Api, DevhostProcess, Reply, assert_problem, wait_until

MANAGEMENT = "/runtime/webhooks/durabletask"


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevhostProcess]:
    folder = tmp_path_factory.mktemp(f"management-{request.param}")
    process = sample_host(folder / "devhost.log", backend=str(request.param)).start()
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture
def api(host: DevhostProcess) -> Api:
    return host.api


def start(api: Api, orchestration: str, instance_id: str, value: str | None = None) -> None:
    query = f"?id={instance_id}" + (f"&input={value}" if value else "")
    assert api.post(f"/v1/start/{orchestration}{query}").status == 202


def finished(api: Api, instance_id: str, query: str = "") -> Any:
    """The instance's status once it is done (Durable Functions answers 200 then, 202 before)."""
    return wait_until(
        lambda: (r := api.get(f"{MANAGEMENT}/instances/{instance_id}{query}")).status == 200 and r.json,
        what=f"{instance_id} to finish",
    )


def ids(reply: Reply) -> set[str]:
    assert reply.status == 200, reply.body
    return {item["instanceId"] for item in reply.json}


def test_list_instances_filters_by_prefix_status_and_time(api: Api) -> None:
    prefix = unique("list")
    start(api, "counts", f"{prefix}-done", "k")
    start(api, "waits_forever", f"{prefix}-waiting")
    finished(api, f"{prefix}-done")
    wait_until(
        lambda: api.get(f"{MANAGEMENT}/instances/{prefix}-waiting").json["runtimeStatus"] == "Running",
        what="the waiter to run",
    )
    listed = f"{MANAGEMENT}/instances?instanceIdPrefix={prefix}"
    assert ids(api.get(listed)) == {f"{prefix}-done", f"{prefix}-waiting"}
    assert ids(api.get(f"{listed}&runtimeStatus=Running")) == {f"{prefix}-waiting"}
    both = {f"{prefix}-done", f"{prefix}-waiting"}
    assert ids(api.get(f"{listed}&runtimeStatus=completed,Running")) == both
    assert ids(api.get(f"{listed}&runtimeStatus=Failed")) == set()

    hour = timedelta(hours=1)
    later = (datetime.now(UTC) + hour).strftime("%Y-%m-%dT%H:%M:%SZ")
    earlier = (datetime.now(UTC) - hour).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids(api.get(f"{listed}&createdTimeFrom={later}")) == set()
    assert ids(api.get(f"{listed}&createdTimeTo={earlier}")) == set()
    assert len(ids(api.get(f"{listed}&createdTimeFrom={earlier}&createdTimeTo={later}"))) == 2

    done = next(i for i in api.get(listed).json if i["instanceId"] == f"{prefix}-done")
    assert done["name"] == "counts" and done["runtimeStatus"] == "Completed"
    assert done["input"] is None  # a list shows inputs only when asked
    assert done["createdTime"].endswith("Z") and done["lastUpdatedTime"].endswith("Z")
    shown = api.get(f"{listed}&showInput=true&runtimeStatus=Completed").json
    assert shown[0]["input"] == "k" and shown[0]["output"] == {"key": "k", "double": 2}

    api.post(f"{MANAGEMENT}/instances/{prefix}-waiting/terminate")


def test_list_instances_pages_with_the_continuation_header(api: Api) -> None:
    prefix = unique("page")
    for index in range(5):
        start(api, "counts", f"{prefix}-{index}", "p")
    for index in range(5):
        finished(api, f"{prefix}-{index}")
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        headers = {"x-ms-continuation-token": token} if token else {}
        reply = api.request("GET", f"{MANAGEMENT}/instances?instanceIdPrefix={prefix}&top=2", headers=headers)
        assert reply.status == 200 and len(reply.json) <= 2
        seen += [item["instanceId"] for item in reply.json]
        pages += 1
        token = reply.headers.get("x-ms-continuation-token")
        if not token:
            break
        assert pages < 10, "the continuation token never ran out"
    assert sorted(seen) == [f"{prefix}-{i}" for i in range(5)]  # each instance exactly once
    assert pages >= 3


def test_bad_list_parameters_are_problems(api: Api) -> None:
    base = f"{MANAGEMENT}/instances"
    assert_problem(api.get(f"{base}?top=0"), 400, "top")
    assert_problem(api.get(f"{base}?top=abc"), 400, "top")
    assert_problem(api.get(f"{base}?runtimeStatus=Sleeping"), 400, "Sleeping")
    assert_problem(api.get(f"{base}?createdTimeFrom=yesterday"), 400, "ISO 8601")
    assert_problem(api.get(f"{base}?showInput=maybe"), 400, "showInput")


def test_status_with_history_in_durable_functions_shape(api: Api) -> None:
    instance = unique("history")
    start(api, "counts", instance, "h")
    plain = finished(api, instance, "?showHistory=true")
    events = plain["historyEvents"]
    assert [e["EventType"] for e in events] == [
        "ExecutionStarted",
        "EntityOperationCalled",
        "EntityOperationCompleted",
        "TaskCompleted",
        "ExecutionCompleted",
    ]
    started, completed, done = events[0], events[3], events[4]
    assert started["FunctionName"] == "counts"
    assert completed["FunctionName"] == "async_double"
    assert completed["ScheduledTime"] <= completed["Timestamp"]
    assert done["OrchestrationStatus"] == "Completed"
    assert all(e["Timestamp"].endswith("Z") for e in events)
    assert not any("Result" in e or "Input" in e for e in events)  # payloads only when asked

    full = finished(api, instance, "?showHistory=true&showHistoryOutput=true")["historyEvents"]
    assert full[0]["Input"] == "h"
    assert full[3]["Result"] == 2
    assert full[4]["Result"] == {"key": "h", "double": 2}
    assert "historyEvents" not in finished(api, instance)
    assert finished(api, instance, "?showInput=false")["input"] is None


def test_a_failed_activity_shows_in_history_with_its_reason(api: Api) -> None:
    instance = unique("fan")
    start(api, "fan_out", instance)
    events = finished(api, instance, "?showHistory=true")["historyEvents"]
    failed = [e for e in events if e["EventType"] == "TaskFailed"]
    assert len(failed) == 1
    assert failed[0]["FunctionName"] == "explode"
    assert "activity exploded" in failed[0]["Reason"]
    assert sorted(e["FunctionName"] for e in events if e["EventType"] == "TaskCompleted") == [
        "async_double",
        "meet",
        "meet",
        "meet",
    ]


def test_running_instances_answer_202_with_location_and_finished_ones_refuse_changes(api: Api) -> None:
    instance = unique("life")
    start(api, "waits_forever", instance)
    path = f"{MANAGEMENT}/instances/{instance}"
    running = wait_until(lambda: (r := api.get(path)).json["runtimeStatus"] == "Running" and r, what="run")
    assert running.status == 202
    assert running.headers["location"].endswith(path)

    assert api.post(f"{path}/suspend?reason=pause").status == 202
    wait_until(lambda: api.get(path).json["runtimeStatus"] == "Suspended", what="suspended")
    assert api.post(f"{path}/resume?reason=go").status == 202
    wait_until(lambda: api.get(path).json["runtimeStatus"] == "Running", what="resumed")
    assert api.post(f"{path}/raiseEvent/go", {"n": 1}).status == 202
    assert finished(api, instance)["output"] == {"n": 1}

    assert_problem(api.post(f"{path}/raiseEvent/go", {"n": 2}), 410, "Completed")
    assert_problem(api.post(f"{path}/terminate"), 410, "Completed")
    assert_problem(api.post(f"{path}/raiseEvent/go", raw=b"{not json"), 400, "JSON")
    assert api.delete(path).json == {"instancesDeleted": 1}
    assert_problem(api.get(path), 404, instance)
    assert_problem(api.delete(path), 404, instance)


def test_entities_get_signal_and_list(api: Api) -> None:
    key = unique("k")
    instance = unique("count")
    assert api.post(f"/v1/count/{key}?id={instance}").status == 202
    finished(api, instance)
    entity = f"{MANAGEMENT}/entities/counter/{key}"
    assert api.get(entity).json == 5
    assert api.post(f"{entity}?op=add", 7).status == 202
    wait_until(lambda: api.get(entity).json == 12, what="the signal to be processed")

    listed = api.get(f"{MANAGEMENT}/entities/counter?fetchState=true&top=1000")
    assert listed.status == 200
    mine = [e for e in listed.json if e["entityId"] == {"name": "counter", "key": key}]
    assert len(mine) == 1 and mine[0]["state"] == 12 and mine[0]["lastOperationTime"].endswith("Z")
    without_state = api.get(f"{MANAGEMENT}/entities/counter?top=1000").json
    assert all("state" not in e for e in without_state)
    assert {"name": "counter", "key": key} in [e["entityId"] for e in api.get(f"{MANAGEMENT}/entities").json]

    assert_problem(api.get(f"{MANAGEMENT}/entities/counter/{unique('none')}"), 404, "does not exist")
    assert_problem(api.post(f"{entity}?op=add", raw=b"{nope"), 400, "JSON")


def test_unknown_management_routes_and_methods_are_problems(api: Api) -> None:
    assert_problem(api.get(f"{MANAGEMENT}/nothing"), 404, "No route")
    reply = api.request("PUT", f"{MANAGEMENT}/instances")
    assert_problem(reply, 405, "PUT")
    assert "GET" in reply.headers["allow"]


def test_the_webhook_prefix_matches_in_any_case_as_in_functions(api: Api) -> None:
    assert api.get("/runtime/webhooks/durableTask/instances?top=1").status == 200
    assert api.get("/Runtime/Webhooks/DurableTask/instances?top=1").status == 200
    assert api.get("/runtime/webhooks/durabletaskx/instances").status == 404


def test_without_ownership_the_api_is_open_and_no_key_is_made(host: DevhostProcess) -> None:
    assert host.api.get(f"{MANAGEMENT}/instances?top=1").status == 200
    assert f"management API: http://127.0.0.1:{host.port}{MANAGEMENT}" in host.log()
    assert "needs this key" not in host.log()


def test_rewind_replays_a_failed_instance_and_refuses_others(api: Api) -> None:
    instance = unique("rewind")
    start(api, "flaky_chain", instance)
    failed = finished(api, instance)
    assert failed["runtimeStatus"] == "Failed" and "flaky failed once" in failed["output"]
    assert api.post(f"{MANAGEMENT}/instances/{instance}/rewind?reason=fixed").status == 202
    path = f"{MANAGEMENT}/instances/{instance}"
    recovered = wait_until(
        lambda: (r := api.get(path).json)["runtimeStatus"] == "Completed" and r,
        what="the rewound instance to complete",
    )
    assert recovered["output"] == "recovered"
    assert_problem(api.post(f"{MANAGEMENT}/instances/{instance}/rewind"), 410, "only a Failed instance")


def test_restart_runs_an_instance_again_with_the_same_or_a_new_id(api: Api) -> None:
    instance = unique("restart")
    start(api, "counts", instance, "r")
    first = finished(api, instance)
    again = api.post(f"{MANAGEMENT}/instances/{instance}/restart")
    assert again.status == 202 and again.json["id"] == instance
    assert again.headers["location"].endswith(f"{MANAGEMENT}/instances/{instance}")
    wait_until(
        lambda: (
            (r := api.get(f"{MANAGEMENT}/instances/{instance}").json)["runtimeStatus"] == "Completed"
            and r["createdTime"] >= first["createdTime"]
            and r
        ),
        what="the restarted run to complete",
    )
    fresh = api.post(f"{MANAGEMENT}/instances/{instance}/restart?restartWithNewInstanceId=true")
    assert fresh.status == 202 and fresh.json["id"] != instance
    assert finished(api, fresh.json["id"], "?showInput=true")["input"] == "r"


def test_purge_by_filter_deletes_only_what_matches(api: Api) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    prefix = unique("purge")
    start(api, "counts", f"{prefix}-done", "p")
    start(api, "waits_forever", f"{prefix}-waiting")
    finished(api, f"{prefix}-done")
    assert_problem(api.delete(f"{MANAGEMENT}/instances"), 400, "createdTimeFrom")
    purged = api.delete(f"{MANAGEMENT}/instances?createdTimeFrom={since}&runtimeStatus=Completed")
    assert purged.status == 200 and purged.json["instancesDeleted"] >= 1
    assert api.get(f"{MANAGEMENT}/instances/{prefix}-done").status == 404
    assert api.get(f"{MANAGEMENT}/instances/{prefix}-waiting").status == 202  # still running, kept
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert_problem(api.delete(f"{MANAGEMENT}/instances?createdTimeFrom={later}"), 404, "No instances")
    api.post(f"{MANAGEMENT}/instances/{prefix}-waiting/terminate")
