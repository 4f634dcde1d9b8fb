"""Issue 8: the router's own 404 and 405 answer in the service's envelope, with its headers.

Starlette raises them itself (no route matched; a route matched but not its method), so
FastAPI's default ``{"detail": …}`` body would otherwise reach API clients that parse
``{"success", "message", "code"}``. The freelancer pages answer with a page instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from server.app import create_app
from server.security import CONTENT_SECURITY_POLICY
from tests.factories import make_settings

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": CONTENT_SECURITY_POLICY,
}


@pytest.fixture
def client(session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    app = create_app(make_settings(), session_factory=session_factory)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as test_client:
        yield test_client


def _assert_security_headers(response, *, no_store: bool) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    if no_store:
        assert response.headers.get("cache-control") == "no-store"


@pytest.mark.parametrize("path", ["/api/v1/freelancer/no-such-endpoint", "/api/v2/anything",
                                  "/api/", "/no/such/path"])
def test_unknown_path_is_a_404_envelope(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"success": False, "message": "Not Found", "code": "not_found"}
    _assert_security_headers(response, no_store=path.startswith("/api/"))


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/healthz", "GET"),
    ("DELETE", "/api/v1/stripe/webhooks", "POST"),
    ("GET", "/api/v1/stripe/connect-webhooks", "POST"),
    ("POST", "/api/v1/freelancer/stripe-connect-status", "GET"),
    ("PATCH", "/api/v1/admin/payouts", "POST"),
])
def test_wrong_method_is_a_405_envelope_naming_the_allowed_methods(
    client: TestClient, method: str, path: str, allowed: str,
) -> None:
    response = client.request(method, path)

    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json() == {"success": False, "message": "Method Not Allowed",
                               "code": "method_not_allowed"}
    _assert_security_headers(response, no_store=path.startswith("/api/"))


def test_unknown_freelancer_page_is_a_404_page(client: TestClient) -> None:
    response = client.get("/freelancer/no-such-page")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<script" not in response.text
    _assert_security_headers(response, no_store=True)


def test_wrong_method_on_a_freelancer_page_is_a_405_page(client: TestClient) -> None:
    response = client.put("/freelancer/logout")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"].startswith("text/html")
    _assert_security_headers(response, no_store=True)
