"""AUTH_MODE=entra end to end: devhost serves the real app, which validates bearer tokens
signed by keys this test generates and serves as a JWKS document on loopback.

Threads belong to the token's `oid`; a forged X-MS-CLIENT-PRINCIPAL-ID header proves
nothing; every refusal is a 401 problem that says what to fix and never quotes the token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import model_env, unique
from tests.integration.harness import Api, DevhostProcess
from tests.integration.in_process import new_devhost
from tests.unit.auth.support import AUDIENCE, CLIENT_ID, TENANT, JwksServer, jwk, new_key, token


@dataclass
class EntraHost:
    host: DevhostProcess
    jwks: JwksServer
    key: rsa.RSAPrivateKey

    @property
    def api(self) -> Api:
        return self.host.api

    def token_for(self, oid: str, **claims: Any) -> str:
        return token(self.key, oid=oid, **claims)


def entra_env(jwks: JwksServer) -> dict[str, str]:
    return {
        "AUTH_MODE": "entra",
        "AUTH_TENANT_ID": TENANT,
        "AUTH_AUDIENCE": f"{AUDIENCE},{CLIENT_ID}",
        "AUTH_JWKS_URL": jwks.url,
        "TRUST_CLIENT_PRINCIPAL_HEADER": "",
    }


@pytest.fixture(scope="module")
def entra_host(fake_model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EntraHost]:
    key = new_key()
    jwks = JwksServer(keys=[jwk(key, "key-1")]).start()
    folder: Path = tmp_path_factory.mktemp("entra")
    env = {**model_env(fake_model), **entra_env(jwks)}
    host = new_devhost(folder / "devhost.log", backend="memory", env=env).start()
    try:
        yield EntraHost(host, jwks, key)
    finally:
        code = host.stop()
        jwks.stop()
        assert code == 0, host.log()


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_health_needs_no_token(entra_host: EntraHost) -> None:
    assert entra_host.api.get("/api/health").status == 200


def test_no_token_is_a_401_that_says_what_to_send(entra_host: EntraHost) -> None:
    reply = entra_host.api.post("/api/threads", {})
    assert reply.status == 401
    assert reply.json["code"] == "unauthorized"
    assert "Authorization: Bearer" in reply.json["detail"]


def test_forged_principal_header_alone_is_refused(entra_host: EntraHost) -> None:
    forged = {"X-MS-CLIENT-PRINCIPAL-ID": "someone-else"}
    reply = entra_host.api.request("POST", "/api/threads", {}, headers=forged)
    assert reply.status == 401


def test_threads_belong_to_the_tokens_oid(entra_host: EntraHost, model: FakeModelServer) -> None:
    api = entra_host.api
    alice = bearer(entra_host.token_for(unique("alice")))
    bob_oid = unique("bob")
    bob = bearer(entra_host.token_for(bob_oid))
    thread = unique("owned")
    assert api.request("POST", "/api/threads", {"thread_id": thread}, headers=alice).status == 201
    posted = api.request(
        "POST", f"/api/threads/{thread}/messages?wait=30", {"content": "mine"}, headers=alice
    )
    assert posted.status == 200, posted.body
    assert posted.json["status"] == "answered"
    assert api.request("GET", f"/api/threads/{thread}", headers=alice).status == 200
    assert api.request("GET", f"/api/threads/{thread}", headers=bob).status == 404
    # Bob claiming to be Alice through the platform header changes nothing.
    as_alice = {**bob, "X-MS-CLIENT-PRINCIPAL-ID": "alice"}
    assert api.request("GET", f"/api/threads/{thread}", headers=as_alice).status == 404


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"exp": int(time.time()) - 3600, "nbf": int(time.time()) - 7200}, "expired"),
        ({"aud": "https://graph.microsoft.com"}, "audience"),
        ({"iss": "https://login.microsoftonline.com/elsewhere/v2.0"}, "issued by"),
    ],
    ids=["expired", "audience", "issuer"],
)
def test_bad_tokens_are_refused_without_quoting_them(
    entra_host: EntraHost, claims: dict[str, Any], expected: str
) -> None:
    bad = entra_host.token_for(unique("carol"), **claims)
    reply = entra_host.api.request("POST", "/api/threads", {}, headers=bearer(bad))
    assert reply.status == 401
    assert expected in reply.json["detail"]
    assert bad not in reply.body.decode()
    assert bad.split(".")[2] not in reply.body.decode()


def test_a_token_signed_by_another_key_is_refused(entra_host: EntraHost) -> None:
    forged = token(new_key(), kid="key-1", oid=unique("mallory"))
    reply = entra_host.api.request("POST", "/api/threads", {}, headers=bearer(forged))
    assert reply.status == 401
    assert "signature" in reply.json["detail"]
