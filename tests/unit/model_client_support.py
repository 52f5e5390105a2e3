"""Shared pieces of the model client's tests: clients built against the scripted fake server
(the `server` and `clock` fixtures live in tests/unit/conftest.py), and a fake Entra ID credential."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken

from agent.model import ChatMessage
from agent.openai_model import (
    OpenAIChatModel,
    build_model_client,
)
from agent.settings import load_settings
from tests.fakes.clock import FakeClock
from tests.fakes.model_server import (
    FakeModelServer,
)

API_KEY = "sk-test-SECRET-0123456789abcdef"
TOKEN = "eyJfake.entra-token-value.signature"
PROMPT = "please keep this prompt private"


def compatible(server: FakeModelServer, clock: FakeClock, **env: str) -> OpenAIChatModel:
    settings = load_settings(
        {"OPENAI_MODEL": "test-model", "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": API_KEY, **env}
    )
    return build_model_client(settings, sleep=clock.sleep, clock=clock.now)


class FakeCredential:
    """An azure-core TokenCredential that hands out a fixed token (or fails)."""

    def __init__(self, token: str = TOKEN, failure: Exception | None = None) -> None:
        self.token, self.failure = token, failure
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.failure is not None:
            raise self.failure
        return AccessToken(self.token, int(time.time()) + 3600)


def azure(server: FakeModelServer, clock: FakeClock, credential: Any = None, **env: str) -> OpenAIChatModel:
    settings = load_settings(
        {
            "AZURE_OPENAI_ENDPOINT": server.root_url,
            "AZURE_OPENAI_DEPLOYMENT": "chat-deployment",
            "AZURE_OPENAI_API_VERSION": "2024-10-21",
            **env,
        }
    )
    return build_model_client(settings, credential=credential, sleep=clock.sleep, clock=clock.now)


def ask(model: OpenAIChatModel, text: str = PROMPT) -> Any:
    return model.complete([ChatMessage("system", "be brief"), ChatMessage("user", text)])
