"""Who is calling: the principal a request's threads belong to, per `AUTH_MODE`.

- `none`: nobody is identified; every caller shares one scope (`None`).
- `app_service`: App Service Authentication validated the caller in front of the app and
  put its object id in `X-MS-CLIENT-PRINCIPAL-ID`; the app trusts that header.
- `entra`: the app validates the `Authorization: Bearer` access token itself — RS256
  signature against the tenant's published signing keys (JWKS), issuer, audience, expiry
  and not-before (with a small leeway) — and the caller is the token's `oid` claim. The
  `X-MS-CLIENT-PRINCIPAL-ID` header is ignored: anyone can send it.

The signing keys are fetched on first use, cached, and fetched again when a token names a
key id the cache does not hold (key rotation) — at most once per `MIN_REFETCH_SECONDS`, so
tokens with made-up key ids cannot make the app hammer the key endpoint — and when the
cached set is older than `MAX_KEY_AGE_SECONDS` (so a key the tenant withdrew stops being
accepted). Nothing is built at import time; one validator per auth configuration is built
on first use and shared by all threads.

Every rejection is an `UnauthorizedError` (HTTP 401) whose message says what to fix. No
message, log line or exception ever contains the token.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import jwt

from agent.errors import BackendUnavailableError, UnauthorizedError
from agent.settings import AuthSettings, Settings

logger = logging.getLogger(__name__)

PRINCIPAL_HEADER = "x-ms-client-principal-id"
AUTHORIZATION_HEADER = "authorization"
ALGORITHMS = ("RS256",)
LEEWAY_SECONDS = 60.0
MIN_REFETCH_SECONDS = 60.0
RETRY_FAILED_FETCH_SECONDS = 10.0
MAX_KEY_AGE_SECONDS = 24 * 3600.0
JWKS_TIMEOUT_SECONDS = 10.0
MAX_JWKS_BYTES = 1024 * 1024
MAX_TOKEN_BYTES = 16 * 1024
LOGIN_HOST = "https://login.microsoftonline.com"


class SigningKeysUnavailableError(BackendUnavailableError):
    """The tenant's signing keys could not be fetched, so no token can be checked; retry later."""

    code = "signing_keys_unavailable"


def default_issuers(tenant_id: str) -> tuple[str, ...]:
    """The tenant's v2.0 issuer and its v1 issuer (an app registration whose manifest keeps
    `accessTokenAcceptedVersion` at its default gets v1 access tokens)."""
    return (f"{LOGIN_HOST}/{tenant_id}/v2.0", f"https://sts.windows.net/{tenant_id}/")


def default_jwks_url(tenant_id: str) -> str:
    return f"{LOGIN_HOST}/{tenant_id}/discovery/v2.0/keys"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name, stripped; None when absent or blank."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    value = (value or "").strip()
    return value or None


def _shown(value: Any) -> str:
    """A claim value from an unverified token, safe and short enough to quote back."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text[:120] + ("…" if len(text) > 120 else ""))


def _fetch_json(url: str, timeout: float) -> Any:
    if not url.startswith(("https://", "http://")):
        raise ValueError("the key set URL is not http(s)")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (checked above)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(MAX_JWKS_BYTES + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
    return json.loads(body)


class EntraTokenValidator:
    """Validates Entra ID access tokens for one auth configuration; thread-safe."""

    def __init__(
        self,
        auth: AuthSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_refetch_seconds: float = MIN_REFETCH_SECONDS,
        retry_failed_fetch_seconds: float = RETRY_FAILED_FETCH_SECONDS,
        max_key_age_seconds: float = MAX_KEY_AGE_SECONDS,
        leeway_seconds: float = LEEWAY_SECONDS,
        timeout_seconds: float = JWKS_TIMEOUT_SECONDS,
        fetch: Callable[[str, float], Any] = _fetch_json,
    ) -> None:
        if not auth.tenant_id or not auth.audiences:
            raise ValueError("AUTH_MODE=entra needs AUTH_TENANT_ID and AUTH_AUDIENCE")
        self.audiences = auth.audiences
        self.issuers = (auth.issuer,) if auth.issuer else default_issuers(auth.tenant_id)
        self.jwks_url = auth.jwks_url or default_jwks_url(auth.tenant_id)
        self._clock = clock
        self._min_refetch = min_refetch_seconds
        self._retry_failed = retry_failed_fetch_seconds
        self._max_age = max_key_age_seconds
        self._leeway = leeway_seconds
        self._timeout = timeout_seconds
        self._fetch = fetch
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self.fetch_count = 0

    # -- keys ----------------------------------------------------------------------------

    def _refresh_locked(self) -> None:
        """Fetch the key set (caller holds the lock); on failure keep what is cached."""
        self._attempted_at = self._clock()
        self.fetch_count += 1
        try:
            document = self._fetch(self.jwks_url, self._timeout)
            if not isinstance(document, dict):
                raise ValueError("the key set is not a JSON object")
            keys: dict[str, jwt.PyJWK] = {}
            for entry in document.get("keys") or []:
                if not isinstance(entry, dict) or entry.get("kty") != "RSA" or not entry.get("kid"):
                    continue
                if entry.get("use", "sig") != "sig":
                    continue
                try:
                    keys[str(entry["kid"])] = jwt.PyJWK(entry, algorithm="RS256")
                except (jwt.PyJWKError, jwt.InvalidKeyError):  # e.g. a modulus that is no number
                    continue
            if not keys:
                raise ValueError("the key set holds no RSA signing keys")
        except (OSError, ValueError, http.client.HTTPException) as failure:
            logger.warning(
                "could not fetch the signing keys from %s: %s", self.jwks_url, type(failure).__name__
            )
            if not self._keys:
                raise SigningKeysUnavailableError(
                    f"The app could not fetch the token signing keys from {self.jwks_url} "
                    f"({type(failure).__name__}), so it cannot check tokens right now. Retry in a "
                    "minute; if it persists, check AUTH_TENANT_ID / AUTH_JWKS_URL and outbound access.",
                    retryable=True,
                ) from None
            return
        self._keys = keys
        self._fetched_at = self._attempted_at
        logger.info("fetched %d signing keys from %s", len(keys), self.jwks_url)

    def _may_fetch_locked(self, now: float) -> bool:
        if self._attempted_at is None:
            return True
        if self._fetched_at is None or self._attempted_at > self._fetched_at:
            return now - self._attempted_at >= self._retry_failed
        return now - self._attempted_at >= self._min_refetch

    def key_for(self, kid: str) -> jwt.PyJWK:
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self._max_age
        key = None if stale else self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self._max_age
            if (stale or kid not in self._keys) and self._may_fetch_locked(now):
                self._refresh_locked()
            elif not self._keys:
                raise SigningKeysUnavailableError(
                    f"The app could not fetch the token signing keys from {self.jwks_url} and will "
                    f"try again within {self._retry_failed:.0f} seconds; retry then.",
                    retryable=True,
                )
            key = self._keys.get(kid)
        if key is None:
            raise UnauthorizedError(
                f"The token is signed with key id {_shown(kid)}, which is not one of this tenant's "
                f"published signing keys ({self.jwks_url}). Use an access token issued by the "
                "tenant in AUTH_TENANT_ID for this API."
            )
        return key

    # -- tokens --------------------------------------------------------------------------

    def principal(self, token: str) -> str:
        """The validated token's `oid`; raises UnauthorizedError saying what is wrong."""
        if len(token) > MAX_TOKEN_BYTES:
            raise UnauthorizedError(
                f"The bearer token is longer than {MAX_TOKEN_BYTES} bytes; it is not one."
            )
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise UnauthorizedError(
                "The bearer token is malformed (not a signed JWT). Send an Entra ID access token: "
                "'Authorization: Bearer <token>'."
            ) from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise UnauthorizedError(
                f"The token is signed with {_shown(alg)}; this API accepts only RS256-signed Entra ID "
                "access tokens."
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise UnauthorizedError(
                "The token names no signing key ('kid'); it is not an Entra ID access token."
            )
        issuer = unverified.get("iss")
        if issuer not in self.issuers:
            raise UnauthorizedError(
                f"The token was issued by {_shown(issuer)}; this API accepts tokens issued by "
                f"{' or '.join(self.issuers)}. Sign in to the tenant in AUTH_TENANT_ID."
            )
        key = self.key_for(kid)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(ALGORITHMS),
                audience=list(self.audiences),
                issuer=list(self.issuers),
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            expired = unverified.get("exp")
            when = (
                datetime.fromtimestamp(expired, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                if isinstance(expired, int | float)
                else "an unknown time"
            )
            raise UnauthorizedError(
                f"The token expired at {when}. Get a new access token and retry."
            ) from None
        except jwt.ImmatureSignatureError:
            raise UnauthorizedError(
                "The token is not valid yet (its 'nbf' or 'iat' is in the future). Check the clock of "
                "the machine that got it."
            ) from None
        except jwt.InvalidAudienceError:
            raise UnauthorizedError(
                f"The token is for audience {_shown(unverified.get('aud'))}; this API accepts "
                f"{' or '.join(self.audiences)}. Request a token for {self.audiences[0]}, e.g. "
                f"`az account get-access-token --resource {self.audiences[0]}`."
            ) from None
        except jwt.InvalidSignatureError:
            raise UnauthorizedError(
                "The token's signature does not verify against the tenant's signing key it names; "
                "the token was altered or not issued by Entra ID. Get a new access token."
            ) from None
        except jwt.MissingRequiredClaimError as missing:
            raise UnauthorizedError(
                f"The token has no '{missing.claim}' claim; it is not an Entra ID access token."
            ) from None
        except jwt.PyJWTError as failure:
            raise UnauthorizedError(
                f"The token was rejected ({type(failure).__name__}). Send an Entra ID access token for "
                f"{self.audiences[0]}."
            ) from None
        oid = claims.get("oid")
        if not isinstance(oid, str) or not oid.strip():
            raise UnauthorizedError(
                "The token has no 'oid' (object id) claim, so it names no user or application. Use an "
                "access token issued to a user or a service principal of the tenant."
            )
        return oid.strip()


_validators: dict[AuthSettings, EntraTokenValidator] = {}
_validators_lock = threading.Lock()


def validator_for(auth: AuthSettings) -> EntraTokenValidator:
    """The shared validator for this configuration, built on first use."""
    found = _validators.get(auth)
    if found is not None:
        return found
    with _validators_lock:
        found = _validators.get(auth)
        if found is None:
            found = _validators[auth] = EntraTokenValidator(auth)
        return found


def bearer_token(headers: Mapping[str, str], audience: str | None = None) -> str:
    """The token of an `Authorization: Bearer` header; raises UnauthorizedError otherwise."""
    value = _header(headers, AUTHORIZATION_HEADER)
    if value is None:
        target = f" for {audience}" if audience else ""
        raise UnauthorizedError(
            f"This API needs a Microsoft Entra ID access token{target}: send "
            "'Authorization: Bearer <token>'"
            + (f" (e.g. from `az account get-access-token --resource {audience}`)." if audience else ".")
        )
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise UnauthorizedError(
            "The Authorization header is malformed; send 'Authorization: Bearer <access token>'."
        )
    return token


def principal_for(
    headers: Mapping[str, str], settings: Settings, *, validator: EntraTokenValidator | None = None
) -> str | None:
    """The principal whose threads this request may use, or None when AUTH_MODE=none.

    Raises UnauthorizedError (401) when the mode requires a principal and the request does
    not prove one, and SigningKeysUnavailableError (503) when keys cannot be fetched.
    """
    auth = settings.auth
    if auth.mode == "none":
        return None
    if auth.mode == "app_service":
        principal = _header(headers, PRINCIPAL_HEADER)
        if principal is None:
            raise UnauthorizedError("Sign in first: this app serves threads only to authenticated callers.")
        return principal
    token = bearer_token(headers, auth.audiences[0] if auth.audiences else None)
    return (validator or validator_for(auth)).principal(token)
