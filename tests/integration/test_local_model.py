"""devhost's embedded local model (devhost/local_model.py).

The endpoint's behaviour is tested in-process with a stand-in for llama-cpp-python, through
the real `openai` client. One smoke test runs the whole stack with the real model: devhost
as a subprocess with no model settings, a thread, a message, a real reply. It is the only
test in the suite that uses the real model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from devhost import local_model
from devhost.local_model import (
    MAX_TOKENS,
    MODEL_LABEL,
    MODEL_SETTINGS,
    LocalModelHandle,
    find_weights,
    start_if_unconfigured,
    unavailable_reason,
)
from tests.integration.harness import DevhostProcess


class FakeLlama:
    """Answers like llama_cpp.Llama.create_chat_completion; `window` messages fit its context."""

    def __init__(self, window: int = 100, context: int = 8192) -> None:
        self.window = window
        self.context = context
        self.calls: list[dict[str, Any]] = []
        self.metadata = {"tokenizer.chat_template": "{{ messages }}"}

    def n_ctx(self) -> int:
        return self.context

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return [0] * len(text.split())  # a token a word

    def create_chat_completion(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        messages = kwargs["messages"]
        if len(messages) > self.window:
            raise ValueError(f"Requested tokens (9000) exceed context window of {self.n_ctx()}")
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "/path/to/weights.gguf",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"heard: {messages[-1]['content']}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        }


@pytest.fixture
def env() -> dict[str, str]:
    return {"OPENAI_API_KEY": "", "SYSTEM_PROMPT": "be brief"}


@pytest.fixture
def llama() -> FakeLlama:
    return FakeLlama()


@pytest.fixture
def loads() -> list[int]:
    return []


@pytest.fixture
def served(env: dict[str, str], llama: FakeLlama, loads: list[int]) -> Iterator[LocalModelHandle]:
    def loader() -> FakeLlama:
        loads.append(1)
        return llama

    handle = start_if_unconfigured(env, loader=loader)
    assert handle is not None
    yield handle
    handle.stop()


def client(env: dict[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=env["OPENAI_BASE_URL"], api_key="unused", max_retries=0, timeout=10)


@pytest.mark.parametrize("name", MODEL_SETTINGS)
def test_a_configured_model_always_wins(name: str) -> None:
    env = {name: "https://example.invalid", "OTHER": "x"}
    assert start_if_unconfigured(env, loader=FakeLlama) is None
    assert env == {name: "https://example.invalid", "OTHER": "x"}


def test_blank_settings_count_as_unset_and_the_app_is_pointed_at_loopback(
    served: LocalModelHandle, env: dict[str, str], loads: list[int]
) -> None:
    assert env["OPENAI_BASE_URL"].startswith("http://127.0.0.1:") and env["OPENAI_BASE_URL"].endswith("/v1")
    assert env["OPENAI_MODEL"] == MODEL_LABEL
    models = client(env).models.list()
    assert [m.id for m in models.data] == [MODEL_LABEL]
    assert loads == []  # listing models does not load the weights


def test_chat_completion_is_labelled_loads_once_and_caps_tokens(
    served: LocalModelHandle, env: dict[str, str], llama: FakeLlama, loads: list[int]
) -> None:
    chat = client(env).chat.completions
    for text in ("hello", "again"):
        reply = chat.create(
            model=env["OPENAI_MODEL"],
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
            max_tokens=100_000,
        )
        assert reply.model == MODEL_LABEL
        assert reply.choices[0].message.content == f"heard: {text}"
        assert reply.usage is not None and reply.usage.total_tokens == 15
    assert loads == [1]
    assert [c["max_tokens"] for c in llama.calls] == [MAX_TOKENS, MAX_TOKENS]
    assert llama.calls[0]["temperature"] == pytest.approx(0.2)
    small = chat.create(model="any", messages=[{"role": "user", "content": "x"}], max_tokens=5, temperature=0)
    assert small.choices[0].finish_reason == "stop"
    assert llama.calls[-1]["max_tokens"] == 5 and llama.calls[-1]["temperature"] == 0


def test_a_long_conversation_drops_its_oldest_messages_but_keeps_the_system_prompt(
    served: LocalModelHandle, env: dict[str, str], llama: FakeLlama
) -> None:
    llama.window = 3
    history: list[Any] = [{"role": "system", "content": "sys"}]
    for n in range(4):
        history += [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]
    history.append({"role": "user", "content": "last"})
    reply = client(env).chat.completions.create(model="m", messages=history)
    assert reply.choices[0].message.content == "heard: last"
    assert llama.calls[-1]["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "assistant", "content": "a3"},
        {"role": "user", "content": "last"},
    ]


def test_history_is_trimmed_to_leave_room_for_the_reply(
    served: LocalModelHandle, env: dict[str, str], llama: FakeLlama
) -> None:
    llama.context = 60  # each one-word message counts 1 + 8 template tokens; 40 left after the reply
    history: list[Any] = [{"role": "system", "content": "sys"}]
    for n in range(4):
        history += [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]
    history.append({"role": "user", "content": "last"})
    client(env).chat.completions.create(model="m", messages=history, max_tokens=20)
    assert [m["content"] for m in llama.calls[-1]["messages"]] == ["sys", "q3", "a3", "last"]


def test_bad_requests_get_openai_shaped_errors(served: LocalModelHandle, env: dict[str, str]) -> None:
    chat = client(env).chat.completions
    with pytest.raises(openai.BadRequestError, match="does not stream"):
        chat.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.BadRequestError, match="messages"):
        chat.create(model="m", messages=[])
    with pytest.raises(openai.NotFoundError):
        client(env).embeddings.create(model="m", input="x")


def test_a_load_failure_is_reported_and_not_retried(env: dict[str, str]) -> None:
    loads: list[int] = []

    def broken() -> Any:
        loads.append(1)
        raise ValueError("Failed to load model from file: weights.gguf")

    handle = start_if_unconfigured(env, loader=broken)
    assert handle is not None
    try:
        for _ in range(2):
            with pytest.raises(openai.APIStatusError, match="failed to load") as raised:
                client(env).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            assert raised.value.status_code == 424
        assert loads == [1]
    finally:
        handle.stop()


def test_stop_restores_the_environment() -> None:
    env = {"OPENAI_MODEL": "", "KEEP": "1"}
    handle = start_if_unconfigured(env, loader=FakeLlama)
    assert handle is not None and env["OPENAI_MODEL"] == MODEL_LABEL
    handle.stop()
    assert env == {"OPENAI_MODEL": "", "KEEP": "1"}


def test_without_the_runtime_devhost_says_so_and_serves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_model, "runtime_installed", lambda: False)
    env: dict[str, str] = {}
    assert start_if_unconfigured(env) is None
    assert env == {}
    assert unavailable_reason() is not None and "llama-cpp-python" in str(unavailable_reason())


# -- the real model, through the whole stack ---------------------------------------------------


def cleared_model_env() -> dict[str, str]:
    """Blank values: they override the machine's environment and any local.settings.json."""
    return {name: "" for name in (*MODEL_SETTINGS, "OPENAI_API_KEY", "MODEL_MAX_OUTPUT_TOKENS")}


def require_local_model() -> Path:
    reason = unavailable_reason()
    weights = find_weights()
    if reason is not None or weights is None:
        message = f"the local model is not installed ({reason}); scripts/_env.sh installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return weights


def test_devhost_answers_with_the_real_local_model_when_none_is_configured(tmp_path: Path) -> None:
    weights = require_local_model()
    host = DevhostProcess(tmp_path / "devhost.log", backend="memory", env=cleared_model_env()).start()
    try:
        assert "loads on the first request" in host.log() and weights.name in host.log()
        assert host.api.get("/api/health").json["model_configured"] is True
        assert host.api.post("/api/threads", {"thread_id": "local"}).status == 201
        sent = host.api.post(
            "/api/threads/local/messages?wait=120", {"content": "Say hello in five words."}, timeout=150
        )
        assert sent.status == 200, (sent.body, host.log())
        reply = sent.json["reply"]
        assert "error" not in reply, (reply, host.log())
        assert reply["content"].strip()
        assert reply["model"] == MODEL_LABEL
        assert "local model: loaded in" in host.log()
    finally:
        code = host.stop()
    assert code == 0, host.log()


def test_no_local_model_flag_leaves_the_app_without_a_model(tmp_path: Path) -> None:
    host = DevhostProcess(tmp_path / "devhost.log", backend="memory", env=cleared_model_env())
    host.extra_args = ["--no-local-model"]
    host.start()
    try:
        assert host.api.get("/api/health").json["model_configured"] is False
        assert "local model" not in host.log()
    finally:
        assert host.stop() == 0, host.log()
