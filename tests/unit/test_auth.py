"""agent.auth: who a request is, per AUTH_MODE, with real RS256 tokens.

The tests generate their own RSA keys and serve them as a JWKS document from a real HTTP
server on loopback (AUTH_JWKS_URL points at it), so the fetch, the cache and the refetch
on an unknown key id run for real. No secret is involved: the keys live for one session.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from agent import auth
from agent.auth import EntraTokenValidator, SigningKeysUnavailableError, principal_for, validator_for
from agent.errors import UnauthorizedError
from agent.settings import AuthSettings, Settings, load_settings

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


def entra_settings(jwks_url: str, **extra: str) -> Settings:
    env = {
        "AUTH_MODE": "entra",
        "AUTH_TENANT_ID": TENANT,
        "AUTH_AUDIENCE": f"{AUDIENCE},{CLIENT_ID}",
        "AUTH_JWKS_URL": jwks_url,
        **extra,
    }
    return load_settings(env)


@pytest.fixture
def settings(jwks: JwksServer) -> Settings:
    return entra_settings(jwks.url)


@pytest.fixture
def validator(settings: Settings) -> EntraTokenValidator:
    return EntraTokenValidator(settings.auth)


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


# -- the happy paths ---------------------------------------------------------------------


def test_valid_v2_token_gives_its_oid(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    assert principal_for(bearer(token(signing_key)), settings, validator=validator) == USER_OID


def test_valid_v1_token_for_the_api_uri_is_accepted(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    # App registrations default to v1 access tokens: issuer sts.windows.net, audience api://…
    v1 = token(signing_key, iss=V1_ISSUER, aud=AUDIENCE)
    assert principal_for(bearer(v1), settings, validator=validator) == USER_OID


def test_header_names_and_scheme_are_case_insensitive(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    headers = {"authorization": f"bearer {token(signing_key)}"}
    assert principal_for(headers, settings, validator=validator) == USER_OID


def test_small_clock_skew_is_tolerated(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    now = int(time.time())
    late = token(signing_key, exp=now - 20, iat=now - 3600, nbf=now - 3600)
    early = token(signing_key, nbf=now + 20, iat=now + 20)
    assert principal_for(bearer(late), settings, validator=validator) == USER_OID
    assert principal_for(bearer(early), settings, validator=validator) == USER_OID


# -- every rejection says what to fix ----------------------------------------------------


def test_no_token(settings: Settings, validator: EntraTokenValidator) -> None:
    message = rejected({}, settings, validator)
    assert "Authorization: Bearer" in message
    assert AUDIENCE in message


def test_forged_principal_header_without_a_token_is_refused(
    settings: Settings, validator: EntraTokenValidator
) -> None:
    message = rejected({"X-MS-CLIENT-PRINCIPAL-ID": "someone-else"}, settings, validator)
    assert "access token" in message


def test_forged_principal_header_is_ignored_next_to_a_valid_token(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    headers = {**bearer(token(signing_key)), "X-MS-CLIENT-PRINCIPAL-ID": "someone-else"}
    assert principal_for(headers, settings, validator=validator) == USER_OID


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "token-without-scheme"])
def test_malformed_authorization_header(
    settings: Settings, validator: EntraTokenValidator, value: str
) -> None:
    with pytest.raises(UnauthorizedError, match="malformed"):
        principal_for({"Authorization": value}, settings, validator=validator)


@pytest.mark.parametrize("value", ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30"])
def test_malformed_token(settings: Settings, validator: EntraTokenValidator, value: str) -> None:
    assert "malformed" in rejected(bearer(value), settings, validator)


def test_expired_token(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    now = int(time.time())
    old = token(signing_key, iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    message = rejected(bearer(old), settings, validator)
    assert "expired" in message
    assert "new access token" in message


def test_token_not_valid_yet(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    now = int(time.time())
    future = token(signing_key, nbf=now + 600, iat=now + 600, exp=now + 4200)
    assert "not valid yet" in rejected(bearer(future), settings, validator)


def test_wrong_audience(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    graph = token(signing_key, aud="https://graph.microsoft.com")
    message = rejected(bearer(graph), settings, validator)
    assert "'https://graph.microsoft.com'" in message
    assert AUDIENCE in message


def test_wrong_issuer(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    other_tenant = token(signing_key, iss="https://login.microsoftonline.com/another-tenant/v2.0")
    message = rejected(bearer(other_tenant), settings, validator)
    assert "another-tenant" in message
    assert V2_ISSUER in message
    assert validator.fetch_count == 0  # refused before any key fetch


def test_explicit_issuer_replaces_the_defaults(jwks: JwksServer, signing_key: rsa.RSAPrivateKey) -> None:
    settings = entra_settings(jwks.url, AUTH_ISSUER=V2_ISSUER)
    validator = EntraTokenValidator(settings.auth)
    assert principal_for(bearer(token(signing_key)), settings, validator=validator) == USER_OID
    v1 = token(signing_key, iss=V1_ISSUER, aud=AUDIENCE)
    assert "issued by" in rejected(bearer(v1), settings, validator)


def test_bad_signature(
    settings: Settings,
    validator: EntraTokenValidator,
    other_key: rsa.RSAPrivateKey,
) -> None:
    # Signed by another key but naming the tenant's key id.
    forged = token(other_key, kid="key-1")
    assert "signature does not verify" in rejected(bearer(forged), settings, validator)


def test_tampered_claims(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    head, _, signature = token(signing_key).split(".")
    body = jwt.utils.base64url_encode(
        json.dumps(
            {"iss": V2_ISSUER, "aud": CLIENT_ID, "oid": "admin", "exp": int(time.time()) + 60}
        ).encode()
    ).decode()
    assert "signature does not verify" in rejected(bearer(f"{head}.{body}.{signature}"), settings, validator)


def test_unknown_key(
    settings: Settings, validator: EntraTokenValidator, other_key: rsa.RSAPrivateKey
) -> None:
    message = rejected(bearer(token(other_key, kid="key-from-elsewhere")), settings, validator)
    assert "'key-from-elsewhere'" in message
    assert "signing keys" in message


@pytest.mark.parametrize("alg", ["HS256", "none"])
def test_only_rs256(settings: Settings, validator: EntraTokenValidator, alg: str) -> None:
    now = int(time.time())
    payload = {"iss": V2_ISSUER, "aud": CLIENT_ID, "oid": USER_OID, "exp": now + 60}
    key: Any = "k" * 32 if alg == "HS256" else None
    forged = jwt.encode(payload, key, algorithm=alg, headers={"kid": "key-1"})
    assert "RS256" in rejected(bearer(forged), settings, validator)


def test_token_without_oid(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    assert "'oid'" in rejected(bearer(token(signing_key, drop=("oid",))), settings, validator)


def test_token_without_expiry(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    assert "'exp'" in rejected(bearer(token(signing_key, drop=("exp",))), settings, validator)


# -- the key cache -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_keys_are_fetched_lazily_once_and_reused(
    settings: Settings, jwks: JwksServer, signing_key: rsa.RSAPrivateKey
) -> None:
    validator = EntraTokenValidator(settings.auth)
    assert jwks.hits == 0  # nothing fetched until a token arrives
    for _ in range(5):
        assert principal_for(bearer(token(signing_key)), settings, validator=validator) == USER_OID
    assert jwks.hits == 1


def test_key_rotation_triggers_one_refetch_with_a_floor(
    settings: Settings, jwks: JwksServer, signing_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    clock = Clock()
    validator = EntraTokenValidator(settings.auth, clock=clock, min_refetch_seconds=60)
    assert validator.principal(token(signing_key)) == USER_OID
    assert jwks.hits == 1

    # The tenant publishes a new key and a token signed with it arrives.
    jwks.keys = [jwk(signing_key, "key-1"), jwk(other_key, "key-2")]
    clock.now += 61
    assert validator.principal(token(other_key, kid="key-2")) == USER_OID
    assert jwks.hits == 2
    for _ in range(3):
        assert validator.principal(token(other_key, kid="key-2")) == USER_OID
        assert validator.principal(token(signing_key)) == USER_OID
    assert jwks.hits == 2

    # Made-up key ids cannot make the app fetch more often than the floor allows.
    for _ in range(5):
        with pytest.raises(UnauthorizedError, match="signing keys"):
            validator.principal(token(other_key, kid=f"made-up-{uuid.uuid4().hex[:6]}"))
    assert jwks.hits == 2
    clock.now += 61
    with pytest.raises(UnauthorizedError, match="signing keys"):
        validator.principal(token(other_key, kid="made-up-again"))
    assert jwks.hits == 3


def test_key_rotation_right_after_a_fetch_waits_for_the_floor(
    settings: Settings, jwks: JwksServer, signing_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    clock = Clock()
    validator = EntraTokenValidator(settings.auth, clock=clock, min_refetch_seconds=60)
    assert validator.principal(token(signing_key)) == USER_OID
    jwks.keys = [jwk(signing_key, "key-1"), jwk(other_key, "key-2")]
    clock.now += 5
    with pytest.raises(UnauthorizedError, match="signing keys"):
        validator.principal(token(other_key, kid="key-2"))
    clock.now += 60
    assert validator.principal(token(other_key, kid="key-2")) == USER_OID
    assert jwks.hits == 2


def test_withdrawn_keys_stop_working_once_the_cache_is_old(
    settings: Settings, jwks: JwksServer, signing_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    clock = Clock()
    validator = EntraTokenValidator(settings.auth, clock=clock, max_key_age_seconds=3600)
    assert validator.principal(token(signing_key)) == USER_OID
    jwks.keys = [jwk(other_key, "key-2")]
    clock.now += 3601
    with pytest.raises(UnauthorizedError, match="signing keys"):
        validator.principal(token(signing_key))
    assert jwks.hits == 2


def test_unreachable_keys_are_a_retryable_503(jwks: JwksServer, signing_key: rsa.RSAPrivateKey) -> None:
    jwks.status = 500
    settings = entra_settings(jwks.url)
    clock = Clock()
    validator = EntraTokenValidator(settings.auth, clock=clock, retry_failed_fetch_seconds=10)
    with pytest.raises(SigningKeysUnavailableError) as caught:
        principal_for(bearer(token(signing_key)), settings, validator=validator)
    assert caught.value.http_status == 503
    assert caught.value.retryable
    assert str(caught.value) == (
        f"The app could not fetch the token signing keys from {jwks.url} (HTTPError), so it cannot check "
        "tokens right now. Retry in a minute; if it persists, check AUTH_TENANT_ID / AUTH_JWKS_URL and "
        "outbound access."
    )
    with pytest.raises(SigningKeysUnavailableError):  # within the retry floor: no new fetch
        validator.principal(token(signing_key))
    assert jwks.hits == 1
    jwks.status = 200
    clock.now += 11
    assert validator.principal(token(signing_key)) == USER_OID
    assert jwks.hits == 2


def test_a_failed_refetch_keeps_the_cached_keys(
    settings: Settings, jwks: JwksServer, signing_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    clock = Clock()
    validator = EntraTokenValidator(settings.auth, clock=clock, min_refetch_seconds=60)
    assert validator.principal(token(signing_key)) == USER_OID
    jwks.status = 503
    clock.now += 61
    with pytest.raises(UnauthorizedError, match="signing keys"):
        validator.principal(token(other_key, kid="key-2"))
    assert validator.principal(token(signing_key)) == USER_OID


def test_shared_validator_is_built_once_across_threads(jwks: JwksServer) -> None:
    config = AuthSettings(
        mode="entra", tenant_id=TENANT, audiences=(f"api://{uuid.uuid4()}",), jwks_url=jwks.url
    )
    assert config not in auth._validators
    found: list[EntraTokenValidator] = []
    barrier = threading.Barrier(8)

    def build() -> None:
        barrier.wait()
        found.append(validator_for(config))

    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(v) for v in found}) == 1 and isinstance(found[0], EntraTokenValidator)
    assert jwks.hits == 0  # built, but no key fetched yet


def test_default_urls_follow_the_tenant() -> None:
    validator = EntraTokenValidator(AuthSettings(mode="entra", tenant_id=TENANT, audiences=(AUDIENCE,)))
    assert validator.jwks_url == f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys"
    assert validator.issuers == (V2_ISSUER, V1_ISSUER)


# -- the other modes ---------------------------------------------------------------------


def test_mode_none_identifies_nobody() -> None:
    settings = load_settings({})
    assert principal_for({"X-MS-CLIENT-PRINCIPAL-ID": "someone"}, settings) is None
    assert principal_for({}, settings) is None


@pytest.mark.parametrize(
    "env", [{"AUTH_MODE": "app_service"}, {"TRUST_CLIENT_PRINCIPAL_HEADER": "true"}], ids=["mode", "legacy"]
)
def test_mode_app_service_trusts_the_platform_header(env: dict[str, str]) -> None:
    settings = load_settings(env)
    assert principal_for({"X-MS-CLIENT-PRINCIPAL-ID": " user-1 "}, settings) == "user-1"
    assert principal_for({"x-ms-client-principal-id": "user-2"}, settings) == "user-2"
    with pytest.raises(UnauthorizedError) as refused:
        principal_for({}, settings)
    assert str(refused.value) == "Sign in first: this app serves threads only to authenticated callers."


def test_only_rsa_signing_keys_with_an_id_are_taken_from_the_key_set(
    jwks: JwksServer, signing_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    unused = {k: v for k, v in jwk(other_key, "no-use").items() if k != "use"}  # `use` defaults to sig
    jwks.keys = [
        {**jwk(other_key, "enc-1"), "use": "enc"},  # an encryption key first: skipped, not the end
        {"kty": "EC", "kid": "ec-1", "crv": "P-256"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},  # unusable: skipped, not the end
        {k: v for k, v in jwk(other_key, "x").items() if k != "kid"},
        "not a key",
        unused,
        jwk(signing_key, "key-1"),
    ]
    validator = EntraTokenValidator(entra_settings(jwks.url).auth)
    settings = entra_settings(jwks.url)
    assert principal_for(bearer(token(signing_key)), settings, validator=validator) == USER_OID
    assert principal_for(bearer(token(other_key, kid="no-use")), settings, validator=validator) == USER_OID
    refused = rejected(bearer(token(other_key, kid="enc-1")), settings, validator)
    assert "enc-1" in refused and "not one of this tenant's published signing keys" in refused


def test_the_key_fetch_gets_the_configured_timeout_and_only_http_urls() -> None:
    seen: list[tuple[str, float]] = []

    def fetch(url: str, timeout: float) -> Any:
        seen.append((url, timeout))
        raise OSError("offline")

    config = entra_settings("https://keys.example/jwks").auth
    validator = EntraTokenValidator(config, fetch=fetch, timeout_seconds=2.5)
    with pytest.raises(SigningKeysUnavailableError) as caught:
        validator.key_for("k")
    assert seen == [("https://keys.example/jwks", 2.5)]
    assert caught.value.retryable is True and "(OSError)" in caught.value.message
    with pytest.raises(ValueError, match=r"^the key set URL is not http\(s\)$"):
        auth._fetch_json("file:///etc/passwd", 1.0)


def test_fresh_keys_are_reused_for_hours_without_a_fetch(
    settings: Settings, jwks: JwksServer, signing_key: rsa.RSAPrivateKey
) -> None:
    clock = Clock()
    validator = EntraTokenValidator(settings.auth, clock=clock, min_refetch_seconds=60)
    assert validator.principal(token(signing_key)) == USER_OID
    for _ in range(3):
        clock.now += 3600  # well past every refetch floor, well within the key age limit
        assert validator.principal(token(signing_key)) == USER_OID
    assert jwks.hits == 1


def test_an_oversized_bearer_token_is_refused_before_any_work(
    settings: Settings, validator: EntraTokenValidator
) -> None:
    message = rejected(bearer("x" * (16 * 1024 + 1)), settings, validator)
    assert message == "The bearer token is longer than 16384 bytes; it is not one."
    assert "malformed" in rejected(bearer("x" * (16 * 1024)), settings, validator)  # the limit itself is read
    assert validator.fetch_count == 0


def test_quoted_claims_are_cut_at_120_characters() -> None:
    assert auth._shown("kid-1") == "'kid-1'"
    assert auth._shown("k" * 120) == repr("k" * 120)
    assert auth._shown("k" * 121) == repr("k" * 120 + "…")
    assert auth._shown(["api://a", 7]) == repr('["api://a", 7]')


def test_no_token_without_a_configured_audience_names_no_resource() -> None:
    with pytest.raises(UnauthorizedError) as caught:
        auth.bearer_token({})
    assert str(caught.value) == (
        "This API needs a Microsoft Entra ID access token: send 'Authorization: Bearer <token>'."
    )
    with pytest.raises(UnauthorizedError) as caught:
        auth.bearer_token({}, AUDIENCE)
    assert str(caught.value) == (
        f"This API needs a Microsoft Entra ID access token for {AUDIENCE}: send 'Authorization: Bearer "
        f"<token>' (e.g. from `az account get-access-token --resource {AUDIENCE}`)."
    )


def test_an_expired_token_says_when_it_expired(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    expired_at = 1_700_000_000  # 2023-11-14 22:13:20 UTC
    old = token(signing_key, iat=expired_at - 3600, nbf=expired_at - 3600, exp=expired_at)
    message = rejected(bearer(old), settings, validator)
    assert message == "The token expired at 2023-11-14 22:13:20 UTC. Get a new access token and retry."


def test_a_foreign_issuer_is_told_every_accepted_issuer(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    foreign = token(signing_key, iss="https://issuer.example/")
    message = rejected(bearer(foreign), settings, validator)
    assert message == (
        "The token was issued by 'https://issuer.example/'; this API accepts tokens issued by "
        f"{V2_ISSUER} or {V1_ISSUER}. Sign in to the tenant in AUTH_TENANT_ID."
    )


def test_key_fetches_are_logged_with_the_url_and_never_a_key(
    jwks: JwksServer, signing_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    settings = entra_settings(jwks.url)
    with caplog.at_level(logging.INFO, logger=auth.__name__):
        assert EntraTokenValidator(settings.auth).principal(token(signing_key)) == USER_OID
        jwks.status = 500
        with pytest.raises(SigningKeysUnavailableError):
            EntraTokenValidator(settings.auth).principal(token(signing_key))
    messages = [record.getMessage() for record in caplog.records if record.name == auth.__name__]
    assert messages == [
        f"fetched 1 signing keys from {jwks.url}",
        f"could not fetch the signing keys from {jwks.url}: HTTPError",
    ]


def test_a_key_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts the connection (backlog), never sends a byte
        port = silent.getsockname()[1]
        with pytest.raises(TimeoutError):
            auth._fetch_json(f"http://127.0.0.1:{port}/keys", 0.2)


# -- every refusal, word for word ------------------------------------------------------------


def test_each_refusal_says_exactly_what_to_fix(
    settings: Settings,
    validator: EntraTokenValidator,
    signing_key: rsa.RSAPrivateKey,
    other_key: rsa.RSAPrivateKey,
) -> None:
    now = int(time.time())
    claims = {"iss": V2_ISSUER, "aud": CLIENT_ID, "oid": USER_OID, "exp": now + 60}
    api = AUDIENCE
    cases: dict[str, tuple[dict[str, str], str]] = {
        "scheme": (
            {"Authorization": "Basic dXNlcjpwYXNz"},
            "The Authorization header is malformed; send 'Authorization: Bearer <access token>'.",
        ),
        "two words": (
            {"Authorization": "Bearer a b"},
            "The Authorization header is malformed; send 'Authorization: Bearer <access token>'.",
        ),
        "not a jwt": (
            bearer("not-a-jwt"),
            "The bearer token is malformed (not a signed JWT). Send an Entra ID access token: "
            "'Authorization: Bearer <token>'.",
        ),
        "hs256": (
            bearer(jwt.encode(claims, "k" * 32, algorithm="HS256", headers={"kid": "key-1"})),
            "The token is signed with 'HS256'; this API accepts only RS256-signed Entra ID access tokens.",
        ),
        "no kid": (
            bearer(jwt.encode(claims, signing_key, algorithm="RS256")),
            "The token names no signing key ('kid'); it is not an Entra ID access token.",
        ),
        "empty kid": (
            bearer(jwt.encode(claims, signing_key, algorithm="RS256", headers={"kid": ""})),
            "The token names no signing key ('kid'); it is not an Entra ID access token.",
        ),
        "not yet": (
            bearer(token(signing_key, nbf=now + 600, iat=now + 600, exp=now + 4200)),
            "The token is not valid yet (its 'nbf' or 'iat' is in the future). Check the clock of the "
            "machine that got it.",
        ),
        "audience": (
            bearer(token(signing_key, aud="https://graph.microsoft.com")),
            "The token is for audience 'https://graph.microsoft.com'; this API accepts "
            f"{api} or {CLIENT_ID}. Request a token for {api}, e.g. "
            f"`az account get-access-token --resource {api}`.",
        ),
        "signature": (
            bearer(token(other_key, kid="key-1")),
            "The token's signature does not verify against the tenant's signing key it names; the token "
            "was altered or not issued by Entra ID. Get a new access token.",
        ),
        "no exp": (
            bearer(token(signing_key, drop=("exp",))),
            "The token has no 'exp' claim; it is not an Entra ID access token.",
        ),
        "bad iat": (
            bearer(token(signing_key, iat="yesterday")),
            f"The token was rejected (InvalidIssuedAtError). Send an Entra ID access token for {api}.",
        ),
        "no oid": (
            bearer(token(signing_key, drop=("oid",))),
            "The token has no 'oid' (object id) claim, so it names no user or application. Use an access "
            "token issued to a user or a service principal of the tenant.",
        ),
        "unknown key": (
            bearer(token(other_key, kid="key-9")),
            f"The token is signed with key id 'key-9', which is not one of this tenant's published signing "
            f"keys ({validator.jwks_url}). Use an access token issued by the tenant in AUTH_TENANT_ID for "
            "this API.",
        ),
    }
    for case, (headers, message) in cases.items():
        assert rejected(headers, settings, validator) == message, case


@pytest.fixture
def new_york_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is not UTC (messages must not depend on it)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_an_expiry_is_told_in_utc_whatever_the_local_time_zone(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey, new_york_time: None
) -> None:
    old = token(signing_key, iat=1_699_990_000, nbf=1_699_990_000, exp=1_700_000_000)
    assert rejected(bearer(old), settings, validator) == (
        "The token expired at 2023-11-14 22:13:20 UTC. Get a new access token and retry."
    )


@pytest.mark.parametrize(
    "config",
    [
        AuthSettings(mode="entra", tenant_id="", audiences=(AUDIENCE,)),
        AuthSettings(mode="entra", tenant_id=TENANT, audiences=()),
    ],
    ids=["no tenant", "no audience"],
)
def test_a_validator_needs_a_tenant_and_an_audience(config: AuthSettings) -> None:
    with pytest.raises(ValueError, match=r"^AUTH_MODE=entra needs AUTH_TENANT_ID and AUTH_AUDIENCE$"):
        EntraTokenValidator(config)


# -- the key cache at its edges ----------------------------------------------------------------


def test_fetches_are_counted_and_the_floors_and_age_hold_to_the_second(
    jwks: JwksServer, signing_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    clock = Clock()
    clock.now = 1_000_000.0  # a monotonic clock far from zero
    validator = EntraTokenValidator(
        entra_settings(jwks.url).auth,
        clock=clock,
        min_refetch_seconds=60,
        retry_failed_fetch_seconds=10,
        max_key_age_seconds=3600,
    )
    assert validator.principal(token(signing_key)) == USER_OID
    assert (validator.fetch_count, jwks.hits) == (1, 1)
    assert jwks.accepts == ["application/json"]
    clock.now += 10  # past the failed-fetch floor, within the refetch floor: no fetch for a new key
    with pytest.raises(UnauthorizedError, match="not one of this tenant's published signing keys"):
        validator.principal(token(other_key, kid="key-2"))
    assert jwks.hits == 1
    clock.now += 50  # exactly the refetch floor after the fetch
    jwks.keys.append(jwk(other_key, "key-2"))
    assert validator.principal(token(other_key, kid="key-2")) == USER_OID
    assert (validator.fetch_count, jwks.hits) == (2, 2)
    clock.now += 3599  # a second short of the key age: the cache serves
    assert validator.principal(token(signing_key)) == USER_OID
    assert jwks.hits == 2
    clock.now += 1  # exactly the key age: stale, fetched again
    assert validator.principal(token(signing_key)) == USER_OID
    assert (validator.fetch_count, jwks.hits) == (3, 3)


def test_a_failed_fetch_is_retried_exactly_at_its_floor(
    jwks: JwksServer, signing_key: rsa.RSAPrivateKey
) -> None:
    jwks.status = 500
    clock = Clock()
    validator = EntraTokenValidator(entra_settings(jwks.url).auth, clock=clock, retry_failed_fetch_seconds=10)
    with pytest.raises(SigningKeysUnavailableError):
        validator.principal(token(signing_key))
    clock.now += 9.999
    with pytest.raises(SigningKeysUnavailableError) as waiting:
        validator.principal(token(signing_key))
    assert waiting.value.retryable is True and waiting.value.http_status == 503
    assert str(waiting.value) == (
        f"The app could not fetch the token signing keys from {jwks.url} and will try again within "
        "10 seconds; retry then."
    )
    assert (validator.fetch_count, jwks.hits) == (1, 1)
    jwks.status = 200
    clock.now += 0.001
    assert validator.principal(token(signing_key)) == USER_OID
    assert (validator.fetch_count, jwks.hits) == (2, 2)


def test_the_shared_validator_serves_requests_without_one(
    jwks: JwksServer, signing_key: rsa.RSAPrivateKey
) -> None:
    settings = entra_settings(jwks.url, AUTH_AUDIENCE=f"api://{uuid.uuid4()},{CLIENT_ID}")
    shared = validator_for(settings.auth)
    assert isinstance(shared, EntraTokenValidator) and validator_for(settings.auth) is shared
    assert principal_for(bearer(token(signing_key)), settings) == USER_OID
    assert principal_for(bearer(token(signing_key)), settings) == USER_OID
    assert shared.fetch_count == 1 and jwks.hits == 1


@pytest.mark.parametrize("size", [auth.MAX_JWKS_BYTES, auth.MAX_JWKS_BYTES + 1])
def test_a_key_set_may_take_a_mebibyte_and_not_a_byte_more(jwks: JwksServer, size: int) -> None:
    jwks.size = size
    if size <= auth.MAX_JWKS_BYTES:
        assert auth._fetch_json(jwks.url, 5.0)["keys"] == jwks.keys
    else:
        with pytest.raises(ValueError, match=r"^the key set is larger than 1048576 bytes$"):
            auth._fetch_json(jwks.url, 5.0)


def test_https_key_set_urls_are_fetched() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(urllib.error.URLError, match="Connection refused"):  # not a refused URL
        auth._fetch_json(f"https://127.0.0.1:{port}/keys", 1.0)


def test_an_expiry_written_as_text_is_refused_without_a_time(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    old = token(signing_key, iat=1_699_990_000, nbf=1_699_990_000, exp="1700000000")  # PyJWT reads it
    assert rejected(bearer(old), settings, validator) == (
        "The token expired at an unknown time. Get a new access token and retry."
    )
