"""`GET /api/threads/{id}/events`: a thread's live progress as Server-Sent Events.

Each response carries the events since the client's `Last-Event-ID` (message taken up,
history entries stored, state changes with running tools and pending approvals) as soon
as there is at least one, or none after `timeout` seconds (default 25), and then ends; an
`EventSource` reconnects at once (`retry: 500`) and resumes after the last id it got. So
the stream works behind the Functions host in Azure, which buffers a response, and costs
at most one instance read and one page read per poll interval per open stream.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from agent.progress import Cursor
from http_api.routes import _query_int, _service, _thread_id, endpoint

MAX_TIMEOUT_SECONDS = 55
RETRY_MS = 500


@endpoint("threads/{thread_id}/events", "GET")
async def thread_events(req: func.HttpRequest, client: df.DurableFunctionsClient) -> func.HttpResponse:
    thread_id = _thread_id(req)
    timeout = _query_int(req, "timeout", 25, 0, MAX_TIMEOUT_SECONDS)
    cursor = Cursor.parse(req.headers.get("last-event-id") or req.params.get("last_event_id"))
    events, after = await _service(req, client).progress(thread_id, cursor, timeout)
    body = f"retry: {RETRY_MS}\n\n" + "".join(e.encode() for e in events)
    if not events:
        body += f"id: {after.encode()}\n: no change\n\n"
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return func.HttpResponse(
        body, status_code=200, mimetype="text/event-stream", headers=headers, charset="utf-8"
    )
