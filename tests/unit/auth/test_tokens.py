"""agent.auth: who a request is, per AUTH_MODE, with real RS256 tokens.

The tests generate their own RSA keys and serve them as a JWKS document from a real HTTP
server on loopback (AUTH_JWKS_URL points at it). No secret is involved: the keys live for
one session. Every refusal says, word for word, what to fix.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from agent import auth
from agent.auth import EntraTokenValidator, principal_for
from agent.errors import UnauthorizedError
from agent.settings import AuthSettings, Settings, load_settings
from tests.unit.auth.support import (
    AUDIENCE,
    CLIENT_ID,
    TENANT,
    USER_OID,
    V1_ISSUER,
    V2_ISSUER,
    JwksServer,
    bearer,
    entra_settings,
    rejected,
    token,
)


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


def test_an_expiry_written_as_text_is_refused_without_a_time(
    settings: Settings, validator: EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    old = token(signing_key, iat=1_699_990_000, nbf=1_699_990_000, exp="1700000000")  # PyJWT reads it
    assert rejected(bearer(old), settings, validator) == (
        "The token expired at an unknown time. Get a new access token and retry."
    )
