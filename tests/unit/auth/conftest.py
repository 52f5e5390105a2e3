"""Fixtures of the auth tests: two RSA keys, a JWKS server serving the first, settings, a validator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from agent.auth import EntraTokenValidator
from agent.settings import Settings
from tests.unit.auth.support import (
    JwksServer,
    entra_settings,
    jwk,
    new_key,
)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture
def jwks(signing_key: rsa.RSAPrivateKey) -> Iterator[JwksServer]:
    server = JwksServer(keys=[jwk(signing_key, "key-1")]).start()
    yield server
    server.stop()


@pytest.fixture
def settings(jwks: JwksServer) -> Settings:
    return entra_settings(jwks.url)


@pytest.fixture
def validator(settings: Settings) -> EntraTokenValidator:
    return EntraTokenValidator(settings.auth)
