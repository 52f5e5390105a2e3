"""agent.auth's signing keys: fetched lazily from a real JWKS server on loopback, cached,
refetched for an unknown key id with floors, aged out, bounded in size and time.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.error
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from agent import auth
from agent.auth import EntraTokenValidator, SigningKeysUnavailableError, principal_for, validator_for
from agent.errors import UnauthorizedError
from agent.settings import AuthSettings, Settings
from tests.unit.auth.support import (
    AUDIENCE,
    CLIENT_ID,
    TENANT,
    USER_OID,
    V1_ISSUER,
    V2_ISSUER,
    Clock,
    JwksServer,
    bearer,
    entra_settings,
    jwk,
    rejected,
    token,
)


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
