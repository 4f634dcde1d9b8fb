"""The platform's own tokens: the frontend's freelancers (and admins) call the API with them.

The marketplace's frontend already holds a JWT from the platform's login. The companion accepts
it, by configuration, beside its own tokens (``lib.tokens``, issuer ``connect-ops``):

- ``PLATFORM_JWT_ISSUER`` and ``PLATFORM_JWT_AUDIENCE`` must match exactly (``iss``, ``aud``);
  ``exp`` is required, ``nbf`` and ``iat`` are honoured, with 30 s of clock skew.
- ``PLATFORM_JWT_ALGORITHM`` is the only algorithm accepted: ``HS256`` with the shared
  ``PLATFORM_JWT_SECRET``, or ``RS256`` / ``ES256`` with the keys published at
  ``PLATFORM_JWKS_URL``. The header's ``alg`` must be exactly that one, so ``alg: none`` and
  algorithm confusion (an HS256 token "signed" with the platform's RSA public key) are refused
  before any key is looked at, and a published key is used only if its type (and its ``alg``
  and ``use``, when given) fit the algorithm.
- Keys are cached for ``PLATFORM_JWKS_CACHE_SECONDS`` and picked by ``kid``. A token naming a
  ``kid`` the cache lacks makes one early refetch (at most every ``MIN_REFETCH_SECONDS``, so
  random ``kid``\\ s cannot make us hammer the platform): the platform can rotate its keys. When
  the platform cannot be reached, the keys last fetched keep working; with none at all, the
  request gets a 503 (``TokenKeysUnavailable``), not a misleading 401.
- ``PLATFORM_JWT_ROLE_CLAIM`` (a string or a list) is mapped through ``PLATFORM_JWT_ROLES``
  to exactly one of our roles; a freelancer's id is read from
  ``PLATFORM_JWT_FREELANCER_ID_CLAIM``. Dotted paths reach nested claims
  (``app_metadata.freelancer_id``). Operators act as ``platform:<sub>`` in the audit log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt

from lib.errors import ConnectOpsError
from lib.roles import Role
from lib.settings import Settings
from lib.tokens import TokenClaims, TokenError

logger = logging.getLogger(__name__)

LEEWAY_SECONDS = 30
MIN_REFETCH_SECONDS = 10.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_TOKEN_LENGTH = 8192
#: The key type each asymmetric algorithm needs (and the curve, for EC).
_KEY_TYPES = {"RS256": ("RSA", None), "ES256": ("EC", "P-256")}


class TokenKeysUnavailable(ConnectOpsError):
    """The platform's signing keys could not be fetched and none are cached (HTTP 503)."""

    code = "token_keys_unavailable"


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` a token claims, read without checking anything (only to pick a verifier)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    issuer = payload.get("iss")
    return issuer if isinstance(issuer, str) else None


def _claim(payload: Mapping[str, Any], path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def fetch_jwks(url: str) -> Mapping[str, Any]:
    """GET the platform's JWKS (``{"keys": [...]}``); ``httpx.HTTPError``/ValueError if it fails."""
    response = httpx.get(url, timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False)
    response.raise_for_status()
    document = response.json()
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    return document


class PlatformTokenVerifier:
    """Verifies the platform's tokens as configured; one per process (it caches the keys)."""

    def __init__(self, settings: Settings, *,
                 fetch: Callable[[str], Mapping[str, Any]] = fetch_jwks,
                 clock: Callable[[], float] = time.monotonic) -> None:
        assert settings.platform_jwt_issuer and settings.platform_jwt_algorithm
        self.issuer = settings.platform_jwt_issuer
        self.audience = settings.platform_jwt_audience
        self.algorithm = settings.platform_jwt_algorithm
        self._secret = (settings.platform_jwt_secret.get_secret_value()
                        if settings.platform_jwt_secret else None)
        self._jwks_url = settings.platform_jwks_url
        self._cache_seconds = float(settings.platform_jwks_cache_seconds)
        self._id_claim = settings.platform_jwt_freelancer_id_claim
        self._role_claim = settings.platform_jwt_role_claim
        self._roles = {value: Role(role) for value, role in settings.platform_role_map.items()}
        self._fetch, self._clock = fetch, clock
        self._lock = threading.Lock()
        self._keys: dict[str | None, Any] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PlatformTokenVerifier | None:
        """The verifier when the platform's tokens are configured, else None."""
        return cls(settings) if settings.platform_jwt_issuer else None

    def claims_issuer(self, token: str) -> bool:
        """True when the token says the platform issued it (then only we may verify it)."""
        return unverified_issuer(token) == self.issuer

    # ---- keys -----------------------------------------------------------------------------

    @staticmethod
    def _kid(token: str) -> str | None:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            return None
        return kid if isinstance(kid, str) else None

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._cache_seconds

    def _may_refetch(self) -> bool:
        return (self._attempted_at is None
                or self._clock() - self._attempted_at >= MIN_REFETCH_SECONDS)

    def needs_keys(self, token: str) -> bool:
        """True when verifying ``token`` would fetch the JWKS (the caller may do it off-loop)."""
        if self._jwks_url is None or not self._may_refetch():
            return False
        return self._stale() or self._kid(token) not in self._keys

    def load_keys(self, token: str) -> None:
        """Fetch the JWKS if ``token`` needs it (blocking; see :meth:`needs_keys`)."""
        with self._lock:
            if not self.needs_keys(token):
                return
            self._attempted_at = self._clock()
            assert self._jwks_url is not None
            try:
                document = self._fetch(self._jwks_url)
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning("could not fetch the platform's JWKS (%s); %d cached key(s) kept",
                               exc.__class__.__name__, len(self._keys))
                return
            self._keys = self._usable_keys(document)
            self._fetched_at = self._clock()
            logger.info("platform JWKS fetched: %d usable key(s)", len(self._keys))

    def _usable_keys(self, document: Mapping[str, Any]) -> dict[str | None, Any]:
        kty, curve = _KEY_TYPES[self.algorithm]
        keys: dict[str | None, Any] = {}
        for entry in document.get("keys") or []:
            if not isinstance(entry, dict) or entry.get("kty") != kty:
                continue
            if curve is not None and entry.get("crv") != curve:
                continue
            if entry.get("alg") not in (None, self.algorithm) or entry.get("use") not in (None, "sig"):
                continue
            try:
                key = jwt.PyJWK(entry, algorithm=self.algorithm)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                logger.warning("platform JWKS: skipped an unusable key (kid %r)", entry.get("kid"))
                continue
            kid = entry.get("kid") if isinstance(entry.get("kid"), str) else None
            keys[kid] = key.key
        return keys

    def _key_for(self, token: str) -> Any:
        if self._secret is not None:
            return self._secret
        if not self._keys:
            raise TokenKeysUnavailable(
                "The platform's signing keys cannot be fetched right now; try again shortly.")
        kid = self._kid(token)
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid not in self._keys:
            raise TokenError("The token is signed with a key the platform does not publish.")
        return self._keys[kid]

    # ---- verification ---------------------------------------------------------------------

    def verify(self, token: str) -> TokenClaims:
        """Check the platform's token and map its claims; TokenError (401) otherwise."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("A bearer token is required.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenError("The token is invalid.") from None
        if header.get("alg") != self.algorithm:  # alg: none, or another algorithm than ours
            raise TokenError("The token is invalid.")
        if self.needs_keys(token):
            self.load_keys(token)
        try:
            payload = jwt.decode(
                token, self._key_for(token), algorithms=[self.algorithm], issuer=self.issuer,
                audience=self.audience, leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("The token is not valid yet.") from None
        except jwt.InvalidTokenError:
            raise TokenError("The token is invalid.") from None
        return self._claims(payload)

    def _claims(self, payload: Mapping[str, Any]) -> TokenClaims:
        raw_roles = _claim(payload, self._role_claim)
        values = raw_roles if isinstance(raw_roles, list) else [raw_roles]
        roles = {self._roles[v] for v in values if isinstance(v, str) and v in self._roles}
        if len(roles) != 1:
            raise TokenError("The token carries no single role this service knows."
                             if len(roles) > 1 else "The token carries no known role.")
        role = roles.pop()
        if role is Role.FREELANCER:
            raw_id = _claim(payload, self._id_claim)
            if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
                raise TokenError("The token carries no freelancer id.")
            subject = str(raw_id)
        else:
            sub = payload.get("sub")
            if not isinstance(sub, str) or not sub:
                raise TokenError("The token has no subject.")
            subject = f"platform:{sub}"[:200]
        expires = payload["exp"]
        if not isinstance(expires, int | float):
            raise TokenError("The token is invalid.")
        return TokenClaims(subject=subject, role=role,
                           expires_at=datetime.fromtimestamp(int(expires), tz=UTC))

