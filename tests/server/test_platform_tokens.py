"""The platform's own tokens, accepted by configuration (issue 19).

HS256 with a shared secret, and RS256 / ES256 with the keys a local test server publishes as a
JWKS (127.0.0.1, started here): mapped claims are accepted; tampered, wrong-issuer,
wrong-audience, ``alg: none``, algorithm-confused, expired and not-yet-valid tokens are 401.
The companion's own tokens keep working beside them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib.db import utcnow
from lib.errors import ConfigurationError
from lib.freelancers import create_freelancer
from lib.models import AuditLog
from lib.platform_tokens import MIN_REFETCH_SECONDS, PlatformTokenVerifier
from lib.roles import Role
from lib.settings import Settings
from lib.tokens import issue_token
from server.app import create_app
from tests.factories import TEST_JWT_SECRET, make_settings

ISSUER = "https://auth.marketplace.example/"
AUDIENCE = "connect-ops-api"
SHARED = "the-platforms-own-hs256-secret-0123456789"
STATUS = "/api/v1/freelancer/stripe-connect-status"


class JwksServer:
    """A JWKS document served over HTTP on 127.0.0.1, changeable, counting its fetches."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.fetches = 0
        self.down = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                if owner.down:
                    self.send_error(503)
                    return
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def publish(self, *keys: tuple[str, Any]) -> None:
        """Publish the public halves of (kid, private key) pairs."""
        published = []
        for kid, private in keys:
            public = private.public_key()
            algorithm = jwt.algorithms.RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) \
                else jwt.algorithms.ECAlgorithm
            jwk = algorithm.to_jwk(public, as_dict=True)
            published.append({**jwk, "kid": kid, "use": "sig"})
        self.document = {"keys": published}


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def freelancer_id(session_factory: sessionmaker[Session]) -> int:
    with session_factory.begin() as session:
        return create_freelancer(session, name="Ada Lovelace", email="ada@example.com").id


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _claims(freelancer_id: int | str, *, roles: Any = ("FREELANCER",), **overrides: Any
            ) -> dict[str, Any]:
    now = int(utcnow().timestamp())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-9", "iat": now, "nbf": now,
              "exp": now + 600, "roles": list(roles) if not isinstance(roles, str) else roles,
              "app_metadata": {"freelancer_id": freelancer_id}}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _settings(algorithm: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "platform_jwt_issuer": ISSUER, "platform_jwt_audience": AUDIENCE,
        "platform_jwt_algorithm": algorithm,
        "platform_jwt_freelancer_id_claim": "app_metadata.freelancer_id",
        "platform_jwt_role_claim": "roles",
        "platform_jwt_roles": "FREELANCER=freelancer,ADMIN=admin",
        "platform_jwks_cache_seconds": 300,
    }
    values.update(overrides)
    return make_settings(**values)


def _client(settings: Settings, session_factory, verifier=None) -> TestClient:
    return TestClient(create_app(settings, session_factory=session_factory,
                                 platform_tokens=verifier), follow_redirects=False)


def _get(client: TestClient, token: str):
    return client.get(STATUS, headers={"Authorization": f"Bearer {token}"})


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _tampered(token: str, **changes: Any) -> str:
    """The same signature over a payload with ``changes``."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _hs512(claims: dict[str, Any]) -> str:
    """The shared secret, another algorithm (PyJWT warns the key is short for SHA-512)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, SHARED, algorithm="HS512")


def _assert_401(response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["success"] is False and response.json()["code"] == "invalid_token"
    assert response.headers["www-authenticate"] == "Bearer"


# ---- HS256 ---------------------------------------------------------------------------------------


def test_hs256_tokens_with_mapped_claims_are_accepted(session_factory, freelancer_id) -> None:
    with _client(_settings("HS256", platform_jwt_secret=SHARED), session_factory) as client:
        token = jwt.encode(_claims(freelancer_id), SHARED, algorithm="HS256")
        response = _get(client, token)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["isConnected"] is False
        # The role claim may be a plain string too; the id a string of digits.
        token = jwt.encode(_claims(str(freelancer_id), roles="FREELANCER"), SHARED,
                           algorithm="HS256")
        assert _get(client, token).status_code == 200
        # The companion's own token (python -m server.tokens) still works beside them.
        own = issue_token(secret=TEST_JWT_SECRET, subject=str(freelancer_id),
                          role=Role.FREELANCER)
        assert _get(client, own).status_code == 200


def test_hs256_refusals_are_401(session_factory, freelancer_id) -> None:
    good = _claims(freelancer_id)
    now = int(utcnow().timestamp())
    refused = {
        "tampered": _tampered(jwt.encode(good, SHARED, algorithm="HS256"),
                              app_metadata={"freelancer_id": freelancer_id + 1}),
        "wrong secret": jwt.encode(good, "another-secret-of-enough-length-0123456789",
                                   algorithm="HS256"),
        "wrong issuer": jwt.encode({**good, "iss": "https://evil.example/"}, SHARED,
                                   algorithm="HS256"),
        "wrong audience": jwt.encode({**good, "aud": "someone-else"}, SHARED, algorithm="HS256"),
        "alg none": _unsigned(good),
        "another HMAC algorithm": _hs512(good),
        "expired": jwt.encode({**good, "exp": now - 120}, SHARED, algorithm="HS256"),
        "not yet valid": jwt.encode({**good, "nbf": now + 600}, SHARED, algorithm="HS256"),
        "no exp": jwt.encode({k: v for k, v in good.items() if k != "exp"}, SHARED,
                             algorithm="HS256"),
        "unknown role": jwt.encode(_claims(freelancer_id, roles=["GUEST"]), SHARED,
                                   algorithm="HS256"),
        "two roles": jwt.encode(_claims(freelancer_id, roles=["FREELANCER", "ADMIN"]), SHARED,
                                algorithm="HS256"),
        "no freelancer id": jwt.encode(_claims(freelancer_id, app_metadata={}), SHARED,
                                       algorithm="HS256"),
    }
    with _client(_settings("HS256", platform_jwt_secret=SHARED), session_factory) as client:
        for case, token in refused.items():
            response = _get(client, token)
            assert response.status_code == 401, (case, response.text)
            _assert_401(response)


# ---- RS256 / ES256 with a JWKS -----------------------------------------------------------------------


def test_rs256_tokens_from_the_jwks_are_accepted_and_mapped(
    session_factory, freelancer_id, jwks, rsa_key,
) -> None:
    jwks.publish(("k1", rsa_key))
    settings = _settings("RS256", platform_jwks_url=jwks.url)
    with _client(settings, session_factory) as client:
        token = jwt.encode(_claims(freelancer_id), rsa_key, algorithm="RS256",
                           headers={"kid": "k1"})
        response = _get(client, token)
        assert response.status_code == 200, response.text
        # An admin of the platform is an admin here, acting as platform:<sub> (audited).
        admin = jwt.encode(_claims(freelancer_id, roles=["ADMIN"], sub="ops-7"), rsa_key,
                           algorithm="RS256", headers={"kid": "k1"})
        refused = _get(client, admin)
        assert refused.status_code == 403
        assert refused.json()["message"] == "This endpoint is for freelancers."
    with session_factory() as session:
        entry = session.scalars(select(AuditLog)).one()
    assert (entry.actor, entry.actor_role) == ("platform:ops-7", "admin")


def test_rs256_refusals_are_401(session_factory, freelancer_id, jwks, rsa_key,
                                other_rsa_key) -> None:
    jwks.publish(("k1", rsa_key))
    good = _claims(freelancer_id)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signed = jwt.encode(good, rsa_key, algorithm="RS256", headers={"kid": "k1"})
    # Algorithm confusion: HS256 "signed" with the RSA public key, which anyone can fetch.
    # PyJWT refuses to encode that; the attacker signs it by hand.
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"})
                                      .encode()).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(good).encode()).rstrip(b"=").decode()
    mac = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    confused = f"{header}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    now = int(utcnow().timestamp())
    refused = {
        "tampered": _tampered(signed, app_metadata={"freelancer_id": freelancer_id + 1}),
        "wrong issuer": jwt.encode({**good, "iss": "https://evil.example/"}, rsa_key,
                                   algorithm="RS256", headers={"kid": "k1"}),
        "wrong audience": jwt.encode({**good, "aud": "someone-else"}, rsa_key,
                                     algorithm="RS256", headers={"kid": "k1"}),
        "alg none": _unsigned(good),
        "algorithm confusion": confused,
        "a key the platform does not publish": jwt.encode(
            good, other_rsa_key, algorithm="RS256", headers={"kid": "k1"}),
        "an unknown kid": jwt.encode(good, other_rsa_key, algorithm="RS256",
                                     headers={"kid": "k9"}),
        "expired": jwt.encode({**good, "exp": now - 120}, rsa_key, algorithm="RS256",
                              headers={"kid": "k1"}),
        "not yet valid": jwt.encode({**good, "nbf": now + 600}, rsa_key, algorithm="RS256",
                                    headers={"kid": "k1"}),
    }
    with _client(_settings("RS256", platform_jwks_url=jwks.url), session_factory) as client:
        assert _get(client, signed).status_code == 200
        for case, token in refused.items():
            response = _get(client, token)
            assert response.status_code == 401, (case, response.text)
            _assert_401(response)


def test_es256_tokens_are_accepted(session_factory, freelancer_id, jwks) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwks.publish(("ec-1", key))
    with _client(_settings("ES256", platform_jwks_url=jwks.url), session_factory) as client:
        token = jwt.encode(_claims(freelancer_id), key, algorithm="ES256",
                           headers={"kid": "ec-1"})
        assert _get(client, token).status_code == 200
        _assert_401(_get(client, _tampered(token, exp=int(utcnow().timestamp()) + 99_999)))


def test_keys_are_cached_and_rotate_by_kid(session_factory, freelancer_id, jwks, rsa_key,
                                           other_rsa_key) -> None:
    jwks.publish(("k1", rsa_key))
    settings = _settings("RS256", platform_jwks_url=jwks.url)
    clock = Clock()
    verifier = PlatformTokenVerifier(settings, clock=clock)
    old = jwt.encode(_claims(freelancer_id), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    new = jwt.encode(_claims(freelancer_id), other_rsa_key, algorithm="RS256",
                     headers={"kid": "k2"})
    before = jwks.fetches
    with _client(settings, session_factory, verifier) as client:
        for _ in range(3):
            assert _get(client, old).status_code == 200
        assert jwks.fetches == before + 1                      # cached

        jwks.publish(("k1", rsa_key), ("k2", other_rsa_key))   # the platform rotates
        _assert_401(_get(client, new))                         # too soon to refetch again
        clock.now += MIN_REFETCH_SECONDS
        assert _get(client, new).status_code == 200            # unknown kid: one refetch
        assert jwks.fetches == before + 2
        assert _get(client, old).status_code == 200

        jwks.publish(("k2", other_rsa_key))                    # k1 retired
        clock.now += 300                                       # the cache expires
        _assert_401(_get(client, old))
        assert _get(client, new).status_code == 200
        assert jwks.fetches == before + 3


def test_platform_unreachable(session_factory, freelancer_id, jwks, rsa_key) -> None:
    """No keys at all: 503 (not a 401 that would log the freelancer out). Keys fetched
    before keep working while the platform is down."""
    jwks.publish(("k1", rsa_key))
    settings = _settings("RS256", platform_jwks_url=jwks.url, platform_jwks_cache_seconds=60)
    token = jwt.encode(_claims(freelancer_id), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    jwks.down = True
    try:
        with _client(settings, session_factory) as client:
            response = _get(client, token)
            assert response.status_code == 503
            assert response.json()["code"] == "token_keys_unavailable"
        clock = Clock()
        verifier = PlatformTokenVerifier(settings, clock=clock)
        with _client(settings, session_factory, verifier) as client:
            jwks.down = False
            assert _get(client, token).status_code == 200
            jwks.down = True
            clock.now += 3600
            assert _get(client, token).status_code == 200      # stale keys, still verified
    finally:
        jwks.down = False


@pytest.mark.parametrize(("overrides", "message"), [
    ({"platform_jwt_audience": None}, "PLATFORM_JWT_AUDIENCE is not set"),
    ({"platform_jwt_secret": "short"}, "at least 32 characters"),
    ({"platform_jwt_secret": TEST_JWT_SECRET}, "must differ from JWT_SECRET"),
    ({"platform_jwt_algorithm": "RS256"}, "PLATFORM_JWKS_URL is not set"),
    ({"platform_jwt_algorithm": "RS256", "platform_jwt_secret": None,
      "platform_jwks_url": "http://idp.example/jwks"}, "must be https://"),
    ({"platform_jwt_issuer": "connect-ops"}, "must not be connect-ops"),
    ({"platform_jwt_roles": "FREELANCER=superuser"}, "PLATFORM_JWT_ROLES must be pairs"),
    ({"platform_jwt_issuer": None}, "PLATFORM_JWT_ISSUER is not"),
])
def test_incomplete_or_confusable_configuration_is_refused(overrides, message) -> None:
    settings = _settings("HS256", **{"platform_jwt_secret": SHARED, **overrides})
    with pytest.raises(ConfigurationError, match=message):
        settings.check_coherence()
