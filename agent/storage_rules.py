"""Pure state rules of a thread's storage entities, one function per operation.

The entities in entities/storage.py only decode input, call these and store the result;
the rules live here so they are unit-tested without a backend:

- the thread's root (`thread` entity): written once when the thread starts; its existence
  marks a thread whose storage may need cleaning up, and it holds the thread's notes;
- a history page (`history_page`): entries appended idempotently by seq (agent.history);
- a history blob (`history_blob`): one large entry, written once;
- a message index record (`message`): where a user message sits (seq), a digest of its
  text (to tell a re-send from a reused id) and the user entry itself, so a message being
  answered can be read before its page is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent import history
from agent.errors import InvalidInputError
from agent.thread import ID_PATTERN

MAX_NOTES = 50
MAX_NOTE_BYTES = 4 * 1024


def _object(arg: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(arg, Mapping):
        raise InvalidInputError(f"{what} needs an object as input")
    return arg


def root_init(state: Any, arg: Any) -> dict[str, Any]:
    """The first init wins: a redelivered or repeated init changes nothing."""
    if isinstance(state, Mapping) and state.get("created_at"):
        return dict(state)
    data = _object(arg, "thread init")
    return {
        "created_at": str(data.get("created_at") or ""),
        "agent": str(data.get("agent") or ""),
        "notes": [],
    }


def root_add_note(state: Any, arg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Add a note (idempotent by note id); refuses past MAX_NOTES or MAX_NOTE_BYTES."""
    current = dict(state) if isinstance(state, Mapping) else {"created_at": "", "agent": "", "notes": []}
    notes = [dict(n) for n in current.get("notes") or () if isinstance(n, Mapping)]
    data = _object(arg, "add_note")
    note_id, text = data.get("id"), data.get("text")
    if not isinstance(note_id, str) or not note_id or not isinstance(text, str):
        raise InvalidInputError("a note needs a string 'id' and 'text'")
    for note in notes:
        if note.get("id") == note_id:
            return current, {"saved": True, "count": len(notes)}
    if len(text.encode("utf-8", errors="replace")) > MAX_NOTE_BYTES:
        return current, {"saved": False, "reason": f"a note holds at most {MAX_NOTE_BYTES} bytes"}
    if len(notes) >= MAX_NOTES:
        return current, {"saved": False, "reason": f"the thread already has {MAX_NOTES} notes"}
    notes.append({"id": note_id, "text": text, "created_at": str(data.get("created_at") or "")})
    current["notes"] = notes
    return current, {"saved": True, "count": len(notes)}


def page_append(state: Any, page: int, arg: Any) -> dict[str, Any]:
    data = _object(arg, "page append")
    items = data.get("entries")
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise InvalidInputError("page append needs 'entries', a list of objects")
    return history.page_append(state, page, items)


def blob_put(state: Any, arg: Any) -> dict[str, Any]:
    if isinstance(state, Mapping) and state.get("seq"):
        return dict(state)
    return history.validate_entry(_object(arg, "blob put"))


def message_put(state: Any, arg: Any) -> dict[str, Any]:
    """Record where a message sits. The first record wins; a retry only counts attempts and
    notes where its newest reply is (`reply_seq`)."""
    data = _object(arg, "message put")
    message_id, seq, digest = data.get("id"), data.get("seq"), data.get("digest")
    if not isinstance(message_id, str) or not ID_PATTERN.fullmatch(message_id):
        raise InvalidInputError("a message record needs the message 'id'")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1 or not isinstance(digest, str):
        raise InvalidInputError("a message record needs 'seq' (a positive integer) and 'digest'")
    if isinstance(state, Mapping) and state.get("seq"):
        current = dict(state)
        current["attempts"] = max(int(current.get("attempts") or 1), int(data.get("attempt") or 1))
        reply_seq = data.get("reply_seq")
        if isinstance(reply_seq, int) and not isinstance(reply_seq, bool) and reply_seq > int(current["seq"]):
            current["reply_seq"] = max(reply_seq, int(current.get("reply_seq") or 0))
        return current
    entry = history.validate_entry(_object(data.get("entry"), "message entry"))
    return {"id": message_id, "seq": seq, "digest": digest, "attempts": 1, "entry": entry}
