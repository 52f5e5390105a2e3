"""devhost's monitor page at /_devhost/: its JSON routes on every backend, and the page itself
in a real headless Chromium (Playwright) against devhost running the app with the fake model.

The browser test launches Debian's chromium (`/usr/bin/chromium`, or `$CHROMIUM`); CI
installs it (.ci/run). It is skipped, saying why, only when no chromium is installed. With
`UPDATE_SCREENSHOTS=1` it also writes the README's screenshot, docs/monitor.png.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.model_server import FakeModelServer, echo
from tests.integration.conftest import model_env
from tests.integration.harness import REPO, Api, DevhostProcess, Reply, assert_problem, wait_until

MONITOR = "/_devhost"
XSS = "<script>window.__pwned=1</script><b>x</b>"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = REPO / "docs" / "monitor.png"


def chromium_path() -> str | None:
    candidate = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
    if Path(candidate).is_file() and os.access(candidate, os.X_OK):
        return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def new_thread(api: Api, metadata: dict[str, Any] | None = None) -> str:
    thread_id = f"t-{uuid.uuid4().hex[:10]}"
    reply = api.post("/api/threads", {"thread_id": thread_id, "metadata": metadata or {}})
    assert reply.status == 201, reply.body
    return thread_id


def say(api: Api, thread_id: str, content: str) -> dict[str, Any]:
    reply = api.post(f"/api/threads/{thread_id}/messages?wait=60", {"content": content})
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json
    return body


def monitor(api: Api, path: str) -> Reply:
    return api.get(f"{MONITOR}/api/{path}")


def act(api: Api, thread_id: str, action: str, body: Any = None, **kwargs: Any) -> Reply:
    return api.post(f"{MONITOR}/api/instances/{thread_id}/{action}", {} if body is None else body, **kwargs)


def runtime_status(api: Api, thread_id: str) -> str:
    reply = monitor(api, f"instances/{thread_id}")
    return str(reply.json["runtime_status"]) if reply.status == 200 else f"HTTP {reply.status}"


def wait_for_status(api: Api, thread_id: str, status: str) -> None:
    wait_until(lambda: runtime_status(api, thread_id) == status, timeout=30, what=f"{thread_id} {status}")


# -- JSON routes, on every backend ------------------------------------------------------------


def test_page_and_assets_are_served_from_devhost_only(api: Api) -> None:
    page = api.get(f"{MONITOR}/")
    assert page.status == 200
    assert page.content_type.startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert api.get(MONITOR).body == page.body  # /_devhost redirects to /_devhost/
    for asset, kind in (("monitor.js", "javascript"), ("monitor.css", "text/css")):
        reply = api.get(f"{MONITOR}/static/{asset}")
        assert reply.status == 200 and kind in reply.content_type, (asset, reply.content_type)
        # nothing is loaded from the internet, nothing is parsed as HTML
        assert b"http://" not in reply.body and b"https://" not in reply.body, asset
        assert b"innerHTML" not in reply.body and b"insertAdjacentHTML" not in reply.body, asset
    assert b"http:" not in page.body and b"https:" not in page.body
    assert monitor(api, "config").json["api_prefix"] == "/api"


def test_lists_threads_and_shows_state_history_and_entities(
    devhost: DevhostProcess, api: Api, model: FakeModelServer
) -> None:
    thread_id = new_thread(api, {"user": "ada"})
    say(api, thread_id, "Hello monitor")

    listed = monitor(api, "instances").json
    row = next(r for r in listed["instances"] if r["instance_id"] == thread_id)
    assert row["name"] == "thread" and row["runtime_status"] == "Running"
    assert row["state"] == "idle" and row["turn"] == 1
    assert row["last_updated_at"].endswith("Z")
    assert all(r["name"] == "thread" for r in listed["instances"])

    detail = monitor(api, f"instances/{thread_id}").json
    assert detail["custom_status"]["state"] == "idle"
    assert detail["input"] is not None and detail["failure"] is None
    assert detail["approvals"] == []

    events = monitor(api, f"instances/{thread_id}/history").json["events"]
    types = [e["type"] for e in events]
    assert "ExecutionStarted" in types, types
    started = events[types.index("ExecutionStarted")]
    assert started["name"] == "thread"
    if devhost.backend == "sqlite":  # the in-memory reference backend does not stamp events
        assert started["timestamp"].endswith("Z")

    assert monitor(api, f"instances/{thread_id}/entities").status == 200
    assert_problem(monitor(api, "instances/no-such-thread"), 404, "no-such-thread")
    assert_problem(monitor(api, "instances?limit=0"), 400, "limit")


def test_a_scheduled_call_is_paired_with_its_completion(
    devhost: DevhostProcess, api: Api, model: FakeModelServer
) -> None:
    thread_id = new_thread(api)
    model.enqueue(echo(delay=2.0))
    api.post(f"/api/threads/{thread_id}/messages", {"content": "slowly"})

    def scheduled_model_call() -> dict[str, Any] | None:
        events = monitor(api, f"instances/{thread_id}/history").json["events"]
        calls = [e for e in events if e["type"] == "TaskScheduled" and e["name"] == "call_model"]
        return calls[-1] if calls and calls[-1].get("open") else None

    call = wait_until(scheduled_model_call, timeout=30, what="the model call in the history")
    assert "duration_ms" not in call and "completed_by" not in call  # still running
    events = monitor(api, f"instances/{thread_id}/history").json["events"]
    raised = [e for e in events if e["type"] == "EventRaised"]
    assert raised and raised[0]["name"] == "user_message"
    assert raised[0]["input"]["content"] == "slowly"
    for event in events:
        if "completed_by" in event:
            completion = events[event["completed_by"]]
            assert completion["completes"] == event["index"]
            assert event["duration_ms"] == completion["duration_ms"]
            # the in-memory reference backend leaves event timestamps unset: no durations
            assert (event["duration_ms"] is None) == (devhost.backend == "memory")
    wait_until(lambda: monitor(api, f"instances/{thread_id}").json["state"] == "idle", timeout=30)


def test_actions_suspend_resume_raise_terminate_purge(api: Api, model: FakeModelServer) -> None:
    thread_id = new_thread(api)
    say(api, thread_id, "before")

    assert act(api, thread_id, "suspend", {"reason": "looking"}).status == 202
    wait_for_status(api, thread_id, "Suspended")
    row = next(r for r in monitor(api, "instances").json["instances"] if r["instance_id"] == thread_id)
    assert row["runtime_status"] == "Suspended"
    assert act(api, thread_id, "resume").status == 202
    wait_for_status(api, thread_id, "Running")

    event = {"name": "user_message", "data": {"id": "from-monitor", "content": "raised by hand"}}
    assert act(api, thread_id, "raise-event", event).status == 202
    answer = api.get(f"/api/threads/{thread_id}/messages/from-monitor?wait=60").json
    assert answer["status"] == "answered", answer

    assert_problem(act(api, thread_id, "purge"), 409, "finished")
    assert act(api, thread_id, "terminate", {"reason": "done"}).status == 202
    wait_for_status(api, thread_id, "Terminated")
    purged = act(api, thread_id, "purge")
    assert purged.status == 200 and purged.json["deleted"] == 1
    assert_problem(monitor(api, f"instances/{thread_id}"), 404, thread_id)
    assert all(r["instance_id"] != thread_id for r in monitor(api, "instances").json["instances"])


def test_actions_refuse_bad_requests_and_other_origins(api: Api) -> None:
    thread_id = new_thread(api)
    assert_problem(act(api, thread_id, "raise-event", {"data": 1}), 400, "'name'")
    assert_problem(act(api, thread_id, "raise-event", raw=b"{not json"), 400, "JSON")
    assert_problem(act(api, thread_id, "rewind"), 404, "rewind")
    assert_problem(act(api, "no-such-thread", "suspend"), 404, "no-such-thread")
    # a cross-site form can post text/plain; a cross-site fetch names its origin
    plain = act(api, thread_id, "terminate", raw=b"{}", headers={"Content-Type": "text/plain"})
    assert_problem(plain, 415, "JSON")
    foreign = act(api, thread_id, "terminate", headers={"Origin": "http://evil.example"})
    assert_problem(foreign, 403, "cross-origin")
    assert runtime_status(api, thread_id) in ("Pending", "Running")


# -- the page in a real browser -----------------------------------------------------------------


@pytest.fixture
def browser_page() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium installed (apt-get install -y chromium; CI installs it in .ci/run)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)  # CI machines are slower than laptops

    with tempfile.TemporaryDirectory(prefix="monitor-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 900},
        )
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            assert errors == [], errors
        finally:
            context.close()


@pytest.mark.parametrize("devhost", ["sqlite"], indirect=True)
def test_the_page_in_a_browser(
    devhost: DevhostProcess, api: Api, model: FakeModelServer, browser_page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    for content in ("Summarise ticket 4711 for the on-call engineer.", "Draft a reply to the customer."):
        say(api, new_thread(api), content)
    paused = new_thread(api)
    assert act(api, paused, "suspend").status == 202
    thread_id = new_thread(api, {"user": "ada", "topic": "rivers"})
    say(api, thread_id, "Name three rivers in Europe.")
    say(api, thread_id, XSS)

    page.goto(f"{devhost.api.base_url}{MONITOR}/")
    row = page.locator(f"#threads tbody tr[data-id='{thread_id}']")
    expect(row).to_be_visible(timeout=15_000)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    row.click()
    expect(page.locator("#t-id")).to_have_text(thread_id)

    # the conversation, through the app's public API; model output is text, never HTML
    messages = page.locator("#messages")
    expect(messages.locator(".msg.user .bubble").first).to_have_text("Name three rivers in Europe.")
    expect(messages.locator(".msg.user .bubble", has_text="window.__pwned")).to_have_text(XSS)
    expect(messages.locator(".msg.assistant .bubble", has_text="window.__pwned")).to_have_text(f"echo: {XSS}")
    assert messages.locator("b, script").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"

    # the history timeline, its payloads folded
    started = page.locator("#timeline li[data-type='ExecutionStarted']")
    expect(started).to_be_visible()
    started.locator("summary", has_text="input").click()
    expect(started.locator("pre").first).to_contain_text('"metadata"')

    # actions: suspend shows Suspended (header and list), resume runs it again
    page.click("button[data-action='suspend']")
    expect(page.locator("#t-runtime")).to_have_text("Suspended", timeout=15_000)
    expect(row.locator(".badge").first).to_have_text("Suspended", timeout=15_000)
    expect(page.locator("button[data-action='resume']")).to_be_enabled()
    page.click("button[data-action='resume']")
    expect(page.locator("#t-runtime")).to_have_text("Running", timeout=15_000)

    # a turn in flight, for the screenshot: the message arrived, the model call is scheduled
    model.enqueue(echo(delay=5.0))
    api.post(f"/api/threads/{thread_id}/messages", {"content": "And three lakes?", "message_id": "q-lakes"})
    model_call = page.locator("#timeline li[data-type='TaskScheduled']", has_text="call_model")
    expect(model_call.last).to_be_visible(timeout=15_000)
    expect(messages.locator(".msg.user .bubble", has_text="lakes")).to_be_visible(timeout=15_000)
    expect(row.locator(".badge").first).to_have_text("thinking")  # the list agrees with the header
    started.locator("summary", has_text="input").click()  # folded again, for the screenshot
    expect(page.locator("#flash")).to_be_hidden(timeout=10_000)
    page.locator("#timeline").evaluate("list => { list.scrollTop = list.scrollHeight; }")  # newest
    page.mouse.move(0, 0)
    shot = tmp_path / "monitor.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)

    # the reply arrives without a reload
    expect(messages.locator(".msg.assistant .bubble", has_text="lakes")).to_have_text(
        "echo: And three lakes?", timeout=30_000
    )
    assert page.evaluate("typeof window.__pwned") == "undefined"


@pytest.mark.parametrize("devhost", ["sqlite"], indirect=True)
def test_pending_approvals_are_shown_and_decided_in_the_browser(
    devhost: DevhostProcess, api: Api, model: FakeModelServer, browser_page: Any
) -> None:
    """The page's side of tool approvals: what the thread publishes in its custom status
    (`pending_approvals`, stubbed here at the monitor's route) is listed as text, and the
    buttons post the decision to the app's public approval route (stubbed at the browser)."""
    from playwright.sync_api import expect

    page = browser_page
    thread_id = new_thread(api)
    say(api, thread_id, "Book a table for two.")
    real = monitor(api, f"instances/{thread_id}").json
    pending = [
        {"call_id": "call-1", "tool": "book_table", "arguments": {"name": XSS, "seats": 2}},
        {"call_id": "call/2", "tool": "send_email", "arguments": {"to": "ada@example.com"}},
    ]
    status = {**real["custom_status"], "state": "awaiting_approval", "pending_approvals": pending}
    stub = {**real, "state": "awaiting_approval", "custom_status": status, "approvals": pending}
    page.route(f"**{MONITOR}/api/instances/{thread_id}", lambda route: route.fulfill(json=stub))
    decisions: list[tuple[str, Any]] = []

    def decide(route: Any) -> None:
        decisions.append((route.request.url, route.request.post_data_json))
        route.fulfill(status=202, json={"thread_id": thread_id})

    page.route(f"**/api/threads/{thread_id}/approvals/**", decide)

    page.goto(f"{devhost.api.base_url}{MONITOR}/#/thread/{thread_id}")  # a deep link
    first = page.locator("#approvals li[data-call-id='call-1']")
    expect(first).to_be_visible(timeout=15_000)
    expect(page.locator("#t-state")).to_have_text("awaiting_approval")
    expect(first.locator(".tool")).to_have_text("book_table")
    expect(first.locator("pre")).to_contain_text(XSS)
    first.get_by_role("button", name="Approve").click()
    page.locator("#approvals li[data-call-id='call/2']").get_by_role("button", name="Deny").click()
    # Sync Playwright runs route handlers only inside its own calls, so the wait must
    # hand it control (a plain sleep would starve `decide` when the click returns first).
    wait_until(lambda: page.wait_for_timeout(50) or len(decisions) == 2, timeout=10, what="both decisions")
    base = f"{devhost.api.base_url}/api/threads/{thread_id}/approvals/"
    assert decisions == [(base + "call-1", {"approve": True}), (base + "call%2F2", {"approve": False})]
    assert page.locator("#approvals b, #approvals script").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"


# -- with thread owners, the monitor needs devhost's management key ----------------------------


@pytest.fixture(scope="module")
def owned_devhost(
    fake_model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevhostProcess]:
    folder = tmp_path_factory.mktemp("devhost-owned")
    env = {**model_env(fake_model), "AUTH_MODE": "app_service"}
    host = DevhostProcess(folder / "devhost.log", backend="memory", env=env).start()
    yield host
    assert host.stop() == 0, host.log()


def management_key(host: DevhostProcess) -> str:
    match = re.search(r"shown only here: (\S+)", host.log())
    assert match, host.log()
    return match.group(1)


def test_with_owners_the_json_routes_need_the_management_key(owned_devhost: DevhostProcess) -> None:
    api = owned_devhost.api
    key = management_key(owned_devhost)
    assert "/_devhost/" in owned_devhost.log()  # devhost prints the monitor's URL
    assert api.get(f"{MONITOR}/").status == 200  # the page itself, which asks for the key
    assert monitor(api, "config").json["key_required"] is True
    assert_problem(monitor(api, "instances"), 401, "?code=")
    assert_problem(act(api, "anything", "terminate"), 401, "?code=")
    assert_problem(api.get(f"{MONITOR}/api/instances?code=wrong"), 401, "key")
    assert api.get(f"{MONITOR}/api/instances?code={key}").status == 200
    keyed = api.request("GET", f"{MONITOR}/api/instances", headers={"x-functions-key": key})
    assert keyed.status == 200 and keyed.json["instances"] == []


def test_with_owners_the_page_asks_for_the_key(owned_devhost: DevhostProcess, browser_page: Any) -> None:
    from playwright.sync_api import expect

    page = browser_page
    base = owned_devhost.api.base_url
    page.goto(f"{base}{MONITOR}/")
    expect(page.locator("#live")).to_have_attribute("data-state", "down")
    expect(page.locator("#live-text")).to_contain_text("?code=")
    page.goto(f"{base}{MONITOR}/?code={management_key(owned_devhost)}")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    assert "code=" not in page.url  # the key leaves the address bar (kept for this tab only)
    expect(page.locator("#threads-empty")).to_contain_text("No threads yet")


# -- the timeline's pairing, without a backend -------------------------------------------------


def test_the_timeline_pairs_completions_with_what_they_complete() -> None:
    from datetime import UTC, datetime, timedelta

    from durabletask import history as h

    from devhost.monitor.views import history_timeline

    t0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)

    def at(ms: int) -> datetime:
        return t0 + timedelta(milliseconds=ms)

    events = [
        h.ExecutionStartedEvent(event_id=-1, timestamp=at(0), name="thread", input='{"turn": 1}'),
        h.TaskScheduledEvent(event_id=0, timestamp=at(10), name="call_model", input='"hi"'),
        h.TimerCreatedEvent(event_id=1, timestamp=at(10), fire_at=at(5000)),
        h.EntityOperationCalledEvent(
            event_id=2, timestamp=at(20), request_id="r1", operation="get", target_instance_id="@thread@t"
        ),
        h.EntityOperationCompletedEvent(event_id=-1, timestamp=at(25), request_id="r1", output="{}"),
        h.TaskCompletedEvent(event_id=-1, timestamp=at(260), task_scheduled_id=0, result="not json"),
        h.TaskScheduledEvent(event_id=3, timestamp=datetime(1970, 1, 1, tzinfo=UTC), name="run_tool"),
    ]
    rows = history_timeline(events)
    assert [r["type"] for r in rows][:2] == ["ExecutionStarted", "TaskScheduled"]
    assert rows[0]["input"] == {"turn": 1} and rows[0]["timestamp"] == "2026-01-31T12:00:00.000Z"
    assert rows[1]["completed_by"] == 5 and rows[1]["duration_ms"] == 250.0
    assert rows[5]["completes"] == 1 and rows[5]["name"] == "call_model" and rows[5]["result"] == "not json"
    assert rows[2]["open"] and rows[2]["name"] == "fires 2026-01-31T12:00:05.000Z"
    assert rows[3]["name"] == "get → @thread@t" and rows[3]["completed_by"] == 4
    assert rows[4]["duration_ms"] == 5.0 and rows[4]["output"] == {}
    assert rows[6]["timestamp"] is None and rows[6]["offset_ms"] is None and rows[6]["open"]
