"""The model sees a bounded window: the system prompt always, then the newest messages that fit."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.in_process import new_devhost


def test_old_messages_drop_out_of_the_window_but_stay_in_history(
    tmp_path: Path, model: FakeModelServer
) -> None:
    env = {**model_env(model), "CONTEXT_WINDOW_BYTES": "1100", "SYSTEM_PROMPT": "Be brief."}
    host = new_devhost(tmp_path / "devhost.log", backend="memory", env=env).start()
    try:
        thread = unique("window")
        assert host.api.post("/api/threads", {"thread_id": thread}).status == 201
        for letter in "abc":
            reply = host.api.post(f"/api/threads/{thread}/messages?wait=30", {"content": letter * 300})
            assert reply.status == 200
        sent = model.requests[-1].messages
        assert sent[0] == {"role": "system", "content": "Be brief."}
        # The system prompt is always sent; 1100 bytes hold the three newest messages (each
        # about 340 bytes once encoded for the request), so the first exchange no longer fits.
        assert [m["content"][:7] for m in sent[1:]] == ["b" * 7, "echo: b", "c" * 7]
        assert sum(len(json.dumps(m)) for m in sent[1:]) <= 1100
        history = host.api.get(f"/api/threads/{thread}/messages?limit=200").json["messages"]
        assert len(history) == 7  # nothing is deleted from the thread itself
    finally:
        assert host.stop() == 0
