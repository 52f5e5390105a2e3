"""Pure rules of a thread's paged history: pages, large entries, the context window.

A thread's entries get consecutive sequence numbers from 1 (the system entry). They are
stored in fixed-size pages: page N holds seq N*PAGE_ENTRIES+1 .. (N+1)*PAGE_ENTRIES, so a
reader finds any entry's page by arithmetic and one page read costs the same at turn 10 and
at turn 100,000. A page must stay under the payload cap, so an entry too large to sit
inline (more than 1/40 of the cap once encoded) is stored on its own as a blob and the page
keeps a stub naming it. The orchestration keeps the context window (agent/window.py) in its
own state, so a turn never reads history back.

Everything here is pure: the entities and the HTTP API adapt these rules to storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent.errors import InvalidInputError
from agent.payload import encoded_size

PAGE_ENTRIES = 32
MAX_PAGE_SIZE = 200
ENTRY_ROLES = ("system", "user", "assistant", "tool")
OPTIONAL_FIELDS = (
    "reply_to",
    "model",
    "usage",
    "latency_ms",
    "finish_reason",
    "error",
    "tool_calls",
    "tool_call_id",
    "name",
    "attempt",
    "truncated",
    "is_error",
    "approval",
)


def page_of(seq: int) -> int:
    return (seq - 1) // PAGE_ENTRIES


def page_bounds(page: int) -> tuple[int, int]:
    """First and last seq a page can hold."""
    return page * PAGE_ENTRIES + 1, (page + 1) * PAGE_ENTRIES


def inline_limit(payload_cap_bytes: int) -> int:
    """Largest encoded entry stored inline; PAGE_ENTRIES of them plus stubs fit the cap."""
    return payload_cap_bytes // 40


def validate_entry(entry: Any) -> dict[str, Any]:
    """Check a stored entry and return a clean copy; InvalidInputError for anything else."""
    if not isinstance(entry, Mapping):
        raise InvalidInputError("a history entry must be an object")
    seq, entry_id, role, content = entry.get("seq"), entry.get("id"), entry.get("role"), entry.get("content")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise InvalidInputError("a history entry needs 'seq', a positive integer")
    if not isinstance(entry_id, str) or not entry_id:
        raise InvalidInputError("a history entry needs a non-empty string 'id'")
    if role not in ENTRY_ROLES:
        raise InvalidInputError(f"a history entry's role must be one of {ENTRY_ROLES}, got {role!r}")
    if not isinstance(content, str):
        raise InvalidInputError("a history entry's 'content' must be a string")
    if not isinstance(entry.get("created_at"), str):
        raise InvalidInputError("a history entry needs 'created_at' as an ISO 8601 string")
    clean: dict[str, Any] = {
        "seq": seq,
        "id": entry_id,
        "role": role,
        "content": content,
        "created_at": entry["created_at"],
    }
    for name in OPTIONAL_FIELDS:
        if entry.get(name) is not None:
            clean[name] = entry[name]
    return clean


def stub_for(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What a page keeps for an entry stored as a blob: everything but the content."""
    stub = {k: v for k, v in entry.items() if k != "content"}
    stub["blob"] = encoded_size(entry)
    return stub


def is_stub(item: Mapping[str, Any]) -> bool:
    return "blob" in item and "content" not in item


def split_for_storage(
    entries: Iterable[Mapping[str, Any]], payload_cap_bytes: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(page items, blob entries): entries over the inline limit become stub + blob."""
    limit = inline_limit(payload_cap_bytes)
    items: list[dict[str, Any]] = []
    blobs: list[dict[str, Any]] = []
    for entry in entries:
        clean = validate_entry(entry)
        if encoded_size(clean) > limit:
            blobs.append(clean)
            items.append(stub_for(clean))
        else:
            items.append(clean)
    return items, blobs


def page_items(state: Any) -> list[dict[str, Any]]:
    if not isinstance(state, Mapping):
        return []
    return [dict(e) for e in state.get("entries") or () if isinstance(e, Mapping)]


def page_append(state: Any, page: int, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A page's state with `items` added. Items already present (same seq) are skipped, so
    a redelivered write changes nothing; an item outside the page is an error."""
    first, last = page_bounds(page)
    current = page_items(state)
    present = {int(e["seq"]) for e in current}
    for item in items:
        seq = item.get("seq")
        if not isinstance(seq, int) or not first <= seq <= last:
            raise InvalidInputError(f"entry seq {seq!r} does not belong on page {page} ({first}-{last})")
        if seq not in present:
            current.append(dict(item))
            present.add(seq)
    current.sort(key=lambda e: int(e["seq"]))
    return {"entries": current}


def check_page_request(after: int, limit: int) -> None:
    if after < 0:
        raise InvalidInputError("'after' must be 0 or a positive sequence number")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"'limit' must be between 1 and {MAX_PAGE_SIZE}")


def pages_for(after: int, limit: int, last_seq: int) -> list[int]:
    """The pages holding seq after+1 .. min(after+limit, last_seq)."""
    end = min(after + limit, last_seq)
    if end <= after:
        return []
    return list(range(page_of(after + 1), page_of(end) + 1))


def final_reply(entries: Iterable[Mapping[str, Any]], message_id: str) -> dict[str, Any] | None:
    """The newest entry that ends a turn answering `message_id` (a reply or an error)."""
    found: dict[str, Any] | None = None
    for entry in entries:
        answers = entry.get("reply_to") == message_id and entry.get("role") == "assistant"
        if answers and (not entry.get("tool_calls") or "error" in entry):
            found = dict(entry)
    return found
