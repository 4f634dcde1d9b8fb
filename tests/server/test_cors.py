"""CORS for the platform's frontend (issue 19): its origin(s) only, on the API only.

By default the one origin of ``FRONTEND_URL``; ``CORS_ALLOWED_ORIGINS`` names others. A
preflight from an allowed origin is answered; from any other origin it is refused, and other
origins' requests never carry ``Access-Control-Allow-Origin`` (their browsers hide the answer).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from lib.errors import ConfigurationError
from lib.freelancers import create_freelancer
from lib.roles import Role
from lib.tokens import issue_token
from server.app import create_app
from tests.factories import TEST_JWT_SECRET, make_settings

FRONTEND = "https://app.marketplace.example"
STATUS = "/api/v1/freelancer/stripe-connect-status"


def _client(session_factory: sessionmaker[Session], **settings: object) -> TestClient:
    return TestClient(create_app(make_settings(**settings), session_factory=session_factory),
                      follow_redirects=False)


@pytest.fixture
def client(session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    with _client(session_factory, frontend_url=f"{FRONTEND}/app") as test_client:
        yield test_client


@pytest.fixture
def token(session_factory: sessionmaker[Session]) -> str:
    with session_factory.begin() as session:
        freelancer_id = create_freelancer(session, name="Ada", email="ada@example.com").id
    return issue_token(secret=TEST_JWT_SECRET, subject=str(freelancer_id), role=Role.FREELANCER)


def _preflight(client: TestClient, origin: str, path: str = STATUS, method: str = "GET"):
    return client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type"})


def test_preflight_from_the_frontend_is_answered(client) -> None:
    response = _preflight(client, FRONTEND)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == FRONTEND
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert set(response.headers["access-control-allow-methods"].split(", ")) >= {
        "GET", "POST", "DELETE"}
    assert "access-control-allow-credentials" not in response.headers  # bearer tokens only
    assert response.headers["x-content-type-options"] == "nosniff"      # still wrapped
    payout = _preflight(client, FRONTEND, "/api/v1/admin/payouts", "POST")
    assert payout.status_code == 200
    assert payout.headers["access-control-allow-origin"] == FRONTEND


@pytest.mark.parametrize("origin", ["https://evil.example", "http://app.marketplace.example",
                                    "https://app.marketplace.example.evil.example", "null"])
def test_preflight_from_another_origin_is_refused(client, origin) -> None:
    response = _preflight(client, origin)
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_requests_carry_the_header_only_for_the_frontend(client, token) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    ours = client.get(STATUS, headers={**auth, "Origin": FRONTEND})
    assert ours.status_code == 200
    assert ours.headers["access-control-allow-origin"] == FRONTEND
    assert "origin" in ours.headers["vary"].lower()
    theirs = client.get(STATUS, headers={**auth, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in theirs.headers


def test_only_the_api_is_cross_origin(client) -> None:
    for path in ("/api/v1/stripe/webhooks", "/freelancer/payment-settings", "/healthz"):
        response = _preflight(client, FRONTEND, path, "POST")
        assert "access-control-allow-origin" not in response.headers, path


def test_configured_origins_and_credentials(session_factory) -> None:
    with _client(session_factory, frontend_url=FRONTEND,
                 cors_allowed_origins="https://a.example, https://b.example:8443",
                 cors_allow_credentials=True) as client:
        for origin in ("https://a.example", "https://b.example:8443"):
            response = _preflight(client, origin)
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == origin
            assert response.headers["access-control-allow-credentials"] == "true"
        assert _preflight(client, FRONTEND).status_code == 400  # the list replaces the default


def test_no_frontend_no_cors(session_factory) -> None:
    with _client(session_factory) as client:
        response = _preflight(client, FRONTEND)
        assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("origins", ["*", "https://app.example/path", "app.example",
                                     "ftp://app.example"])
def test_what_is_not_an_origin_is_refused_at_start(origins) -> None:
    with pytest.raises(ConfigurationError, match="CORS_ALLOWED_ORIGINS"):
        make_settings(cors_allowed_origins=origins).check_coherence()
