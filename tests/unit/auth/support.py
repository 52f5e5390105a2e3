"""Shared pieces of the auth tests: the tenant, real RSA keys, a JWKS server on loopback, tokens."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from agent.auth import EntraTokenValidator, principal_for
from agent.errors import UnauthorizedError
from agent.settings import Settings, load_settings

TENANT = "11111111-2222-3333-4444-555555555555"


CLIENT_ID = "66666666-7777-8888-9999-000000000000"


AUDIENCE = f"api://{CLIENT_ID}"


V2_ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"


V1_ISSUER = f"https://sts.windows.net/{TENANT}/"


USER_OID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "use": "sig", "alg": "RS256"}


@dataclass
class JwksServer:
    """Serves `keys` as a JWKS document and counts the fetches."""

    keys: list[Any] = field(default_factory=list)
    hits: int = 0
    status: int = 200
    #: the document is padded with spaces to this many bytes (0: as it is)
    size: int = 0
    accepts: list[str | None] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/discovery/v2.0/keys"

    def start(self) -> JwksServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.hits += 1
                owner.accepts.append(self.headers.get("Accept"))
                body = json.dumps({"keys": owner.keys}).encode()
                body += b" " * max(0, owner.size - len(body))
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def entra_settings(jwks_url: str, **extra: str) -> Settings:
    env = {
        "AUTH_MODE": "entra",
        "AUTH_TENANT_ID": TENANT,
        "AUTH_AUDIENCE": f"{AUDIENCE},{CLIENT_ID}",
        "AUTH_JWKS_URL": jwks_url,
        **extra,
    }
    return load_settings(env)


def token(
    key: rsa.RSAPrivateKey,
    *,
    kid: str = "key-1",
    alg: str = "RS256",
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": V2_ISSUER,
        "aud": CLIENT_ID,
        "tid": TENANT,
        "oid": USER_OID,
        "sub": "subject-1",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 3600,
        **claims,
    }
    for name in drop:
        payload.pop(name, None)
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def rejected(headers: dict[str, str], settings: Settings, validator: EntraTokenValidator) -> str:
    """The 401 message for these headers; checks that it never quotes the token."""
    with pytest.raises(UnauthorizedError) as caught:
        principal_for(headers, settings, validator=validator)
    assert caught.value.http_status == 401
    message = str(caught.value)
    sent = headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if sent:
        assert sent not in message
        for part in sent.split("."):
            assert len(part) < 20 or part not in message
    return message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
