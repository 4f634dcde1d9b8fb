"""Issue 8: security headers on every response the companion sends, whatever produced it.

Pages, JSON, redirects, validation errors, the router's own 404/405 and domain errors pass
through one middleware; a bug's 500 is answered by Starlette outside every middleware, so its
handler adds them itself.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.security import CONTENT_SECURITY_POLICY
from tests.factories import make_settings

BASELINE = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

REQUESTS = [
    ("GET", "/healthz", None),
    ("GET", "/openapi.json", None),
    ("GET", "/api/v1/freelancer/stripe-connect-callback?state=forged&code=ac_x", None),
    ("GET", "/api/v1/freelancer/stripe-connect-callback", None),
    ("GET", "/api/v1/freelancer/stripe-connect-url", None),  # no token: 401
    ("POST", "/api/v1/stripe/webhooks", b"{}"),  # no signature: 400
    ("POST", "/api/v1/stripe/connect-webhooks", b"not json"),
    ("POST", "/api/v1/admin/payouts", b"{}"),  # no token
    ("GET", "/freelancer/login?token=bad", None),
    ("GET", "/freelancer/payment-settings", None),  # not signed in
    ("GET", "/freelancer/stripe/error?reason=access_denied", None),
    ("GET", "/no/such/path", None),  # the router's 404
    ("PUT", "/healthz", None),  # the router's 405
    ("DELETE", "/api/v1/stripe/webhooks", None),
]


@pytest.fixture
def client(session_factory: sessionmaker[Session]):
    app = create_app(make_settings(), session_factory=session_factory)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as test_client:
        yield test_client


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS,
                         ids=[f"{method} {path}" for method, path, _ in REQUESTS])
def test_every_response_carries_the_security_headers(client: TestClient, method: str, path: str,
                                                    body: bytes | None) -> None:
    response = client.request(method, path, content=body)

    for name, value in BASELINE.items():
        assert response.headers.get(name) == value, (response.status_code, name)
    assert response.headers.get("content-security-policy"), response.status_code
    if path.startswith(("/api/", "/freelancer")):
        assert response.headers.get("cache-control") == "no-store", response.status_code
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]  # set once


def test_the_service_pages_get_the_strict_policy(client: TestClient) -> None:
    response = client.get("/freelancer/stripe/error?reason=access_denied")

    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_an_unexpected_failure_still_carries_the_headers(
        session_factory: sessionmaker[Session]) -> None:
    app = create_app(make_settings(), session_factory=session_factory)

    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("a bug in a handler")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/api/v1/boom")

    assert response.status_code == 500
    for name, value in BASELINE.items():
        assert response.headers.get(name) == value, name
    assert response.headers.get("cache-control") == "no-store"
    assert response.json() == {"success": False, "code": "internal_error",
                               "message": "Something went wrong on our side; nothing more was "
                                          "done. Try again in a moment."}
    assert "a bug in a handler" not in response.text
