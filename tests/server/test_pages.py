"""The freelancer's own pages: signed-link access, CSRF, escaping, and the connect flow's pages."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle, running_emulator
from lib.accounts import upsert_account
from lib.freelancers import create_freelancer, get_freelancer
from lib.models import ConnectionAttempt, ConnectionMethod
from lib.roles import Role
from lib.settings import Settings
from lib.tokens import issue_token
from server import links
from server.app import create_app
from server.pages import ERROR_MESSAGES, SESSION_COOKIE, UNKNOWN_ERROR
from server.security import CONTENT_SECURITY_POLICY
from tests.factories import TEST_CLIENT_ID, TEST_JWT_SECRET, make_settings

SETTINGS_PATH = "/freelancer/payment-settings"


# ---- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def freelancer_id(session_factory: sessionmaker[Session]) -> int:
    with session_factory.begin() as session:
        return create_freelancer(session, name="Ada Lovelace", email="ada@example.com",
                                 country="GB").id


@pytest.fixture
def client(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    app = create_app(settings, session_factory=session_factory)
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def login_path(settings: Settings, freelancer_id: int) -> str:
    parts = urlsplit(links.freelancer_page_link(settings, freelancer_id, timedelta(minutes=5)))
    return f"{parts.path}?{parts.query}"


def sign_in(client: TestClient, settings: Settings, freelancer_id: int) -> None:
    response = client.get(login_path(settings, freelancer_id))
    assert response.status_code == 303


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def connect_account(session_factory: sessionmaker[Session], freelancer_id: int,
                    method: ConnectionMethod, **account: Any) -> str:
    """Seed the mirror as if Stripe had been read: a connected account in a given state."""
    raw: dict[str, Any] = {
        "id": "acct_1Seeded0000000001", "object": "account", "type": "express",
        "livemode": False, "charges_enabled": True, "payouts_enabled": True,
        "details_submitted": True, "capabilities": {"transfers": "active"},
        "requirements": {"currently_due": [], "past_due": [], "eventually_due": [],
                         "pending_verification": [], "current_deadline": None,
                         "disabled_reason": None},
        "future_requirements": {},
    }
    raw.update(account)
    with session_factory.begin() as session:
        upsert_account(session, account=raw)
        freelancer = get_freelancer(session, freelancer_id=freelancer_id)
        freelancer.stripe_account_id = raw["id"]
        freelancer.connection_method = method.value
    return str(raw["id"])


def account_id_of(session_factory: sessionmaker[Session], freelancer_id: int) -> str | None:
    with session_factory() as session:
        return get_freelancer(session, freelancer_id=freelancer_id).stripe_account_id


def attempts(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(ConnectionAttempt)) or 0)


# ---- access: signed link, cookie, 401 pages --------------------------------------------------


def test_login_link_sets_session_cookie_and_shows_not_connected(
    client: TestClient, settings: Settings, freelancer_id: int,
) -> None:
    path = login_path(settings, freelancer_id)
    link_token = path.split("token=", 1)[1]

    response = client.get(path)

    assert response.status_code == 303
    assert response.headers["location"] == SETTINGS_PATH  # the token leaves the address bar
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/freelancer" in cookie
    assert "Max-Age=28800" in cookie and "Secure" not in cookie  # http:// backend in tests
    assert link_token not in cookie  # a new session token, not the link's

    page = client.get(SETTINGS_PATH)
    assert page.status_code == 200
    assert 'data-testid="status">NOT_CONNECTED<' in page.text
    for text in ("Payment Settings", "Connect Your Stripe Account", "Connect with Stripe",
                 "Create a new Stripe account", "What happens next?",
                 "We never see or store your bank details", "Ada Lovelace"):
        assert text in page.text
    assert "Disconnect Stripe Account" not in page.text


def test_secure_cookie_when_backend_is_https(
    session_factory: sessionmaker[Session], freelancer_id: int,
) -> None:
    settings = make_settings(backend_url="https://ops.example.com")
    with TestClient(create_app(settings, session_factory=session_factory),
                    follow_redirects=False) as client:
        response = client.get(login_path(settings, freelancer_id))
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


def _token(subject: str, role: Role = Role.FREELANCER,
           lifetime: timedelta = timedelta(minutes=5), secret: str = TEST_JWT_SECRET) -> str:
    return issue_token(secret=secret, subject=subject, role=role, lifetime=lifetime)


@pytest.mark.parametrize("kind", ["expired", "wrong_signature", "garbage", "admin", "missing",
                                  "unknown_freelancer", "empty"])
def test_bad_login_link_gets_a_401_page_and_no_cookie(
    client: TestClient, freelancer_id: int, kind: str,
) -> None:
    token = {
        "expired": _token(str(freelancer_id), lifetime=timedelta(minutes=-10)),
        "wrong_signature": _token(str(freelancer_id), secret="another-secret-" + "x" * 30),
        "garbage": "not.a.jwt",
        "admin": _token("admin", role=Role.ADMIN),
        "missing": None,
        "unknown_freelancer": _token("999999"),
        "empty": "",
    }[kind]
    url = "/freelancer/login" if token is None else f"/freelancer/login?token={token}"

    response = client.get(url)

    assert response.status_code == 401
    assert "text/html" in response.headers["content-type"]
    assert "Ask the platform for a new link" in response.text
    assert "set-cookie" not in response.headers
    assert "Traceback" not in response.text


def test_pages_without_cookie_get_a_401_page(client: TestClient, freelancer_id: int) -> None:
    for method, path in (("GET", SETTINGS_PATH), ("GET", "/freelancer/disconnect"),
                         ("POST", "/freelancer/connect"), ("POST", "/freelancer/disconnect"),
                         ("POST", "/freelancer/logout")):
        response = client.request(method, path)
        assert response.status_code == 401, path
        assert "Ask the platform for a new link" in response.text


def test_forged_or_expired_cookie_gets_a_401_page(client: TestClient, freelancer_id: int) -> None:
    for token in (_token(str(freelancer_id), lifetime=timedelta(minutes=-10)),
                  _token(str(freelancer_id), secret="another-secret-" + "x" * 30)):
        client.cookies.set(SESSION_COOKIE, token, path="/freelancer")
        response = client.get(SETTINGS_PATH)
        assert response.status_code == 401
        client.cookies.clear()


def test_logout_clears_the_session(client: TestClient, settings: Settings,
                                   freelancer_id: int) -> None:
    sign_in(client, settings, freelancer_id)
    csrf = csrf_of(client.get(SETTINGS_PATH).text)

    response = client.post("/freelancer/logout", data={"csrf_token": csrf})

    assert response.status_code == 200
    assert "Signed out" in response.text
    assert client.get(SETTINGS_PATH).status_code == 401


# ---- CSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/freelancer/connect", "/freelancer/disconnect",
                                  "/freelancer/logout"])
def test_post_without_or_with_a_wrong_csrf_token_is_refused(
    client: TestClient, settings: Settings, session_factory: sessionmaker[Session],
    freelancer_id: int, path: str,
) -> None:
    sign_in(client, settings, freelancer_id)
    other_session_csrf = csrf_of(client.get(SETTINGS_PATH).text) + "0"
    for data in ({"method": "oauth"}, {"method": "oauth", "csrf_token": ""},
                 {"method": "oauth", "csrf_token": other_session_csrf}):
        response = client.post(path, data=data)
        assert response.status_code == 403, data
        assert "Nothing was changed" in response.text
    assert attempts(session_factory) == 0
    assert client.get(SETTINGS_PATH).status_code == 200  # still signed in


@pytest.mark.parametrize("path", ["/freelancer/connect", "/freelancer/disconnect",
                                  "/freelancer/logout"])
@pytest.mark.parametrize("forged", ["é", "токен", "\u00ff" * 64, "0" * 40 + "✓"])
def test_non_ascii_csrf_token_is_refused_not_a_500(
    client: TestClient, settings: Settings, session_factory: sessionmaker[Session],
    freelancer_id: int, path: str, forged: str,
) -> None:
    # Issue 8: compare_digest on str raises TypeError for non-ASCII text (a 500 page).
    sign_in(client, settings, freelancer_id)

    response = client.post(path, data={"method": "oauth", "csrf_token": forged})

    assert response.status_code == 403
    assert "Nothing was changed" in response.text
    assert attempts(session_factory) == 0
    assert client.get(SETTINGS_PATH).status_code == 200  # still signed in


def test_csrf_token_of_another_session_is_refused(
    client: TestClient, settings: Settings, session_factory: sessionmaker[Session],
    freelancer_id: int,
) -> None:
    with session_factory.begin() as session:
        other_id = create_freelancer(session, name="Eve", email="eve@example.com").id
    sign_in(client, settings, other_id)
    others_csrf = csrf_of(client.get(SETTINGS_PATH).text)
    client.cookies.clear()
    sign_in(client, settings, freelancer_id)
    assert csrf_of(client.get(SETTINGS_PATH).text) != others_csrf

    response = client.post("/freelancer/connect", data={"method": "oauth",
                                                         "csrf_token": others_csrf})

    assert response.status_code == 403
    assert attempts(session_factory) == 0


def test_unknown_connect_method_is_refused(client: TestClient, settings: Settings,
                                           session_factory: sessionmaker[Session],
                                           freelancer_id: int) -> None:
    sign_in(client, settings, freelancer_id)
    csrf = csrf_of(client.get(SETTINGS_PATH).text)

    response = client.post("/freelancer/connect", data={"method": "https://evil.example",
                                                        "csrf_token": csrf})

    assert response.status_code == 400
    assert "Choose how to connect" in response.text
    assert "evil.example" not in response.text
    assert attempts(session_factory) == 0


# ---- success and error pages (public) ------------------------------------------------------


def test_success_page_shows_a_valid_account_id_and_returns_after_3_seconds(
    client: TestClient,
) -> None:
    response = client.get("/freelancer/stripe/success?accountId=acct_1AbC23")

    assert response.status_code == 200
    assert "Successfully Connected!" in response.text
    assert "<code data-testid=\"account-id\">acct_1AbC23</code>" in response.text
    assert "Redirecting you back to payment settings" in response.text
    assert ('<meta http-equiv="refresh" content="3;url=/freelancer/payment-settings">'
            in response.text)


@pytest.mark.parametrize("value", ['<script>alert(1)</script>', 'acct_"><script>x</script>',
                                   "acct_", "acct_" + "a" * 65, "acct_12 34", "cus_123", ""])
def test_success_page_never_shows_an_invalid_account_id(client: TestClient, value: str) -> None:
    response = client.get("/freelancer/stripe/success", params={"accountId": value})

    assert response.status_code == 200
    assert "Successfully Connected!" in response.text
    assert "<script" not in response.text
    assert "Account ID" not in response.text


@pytest.mark.parametrize("reason, message", [
    ("access_denied", "You denied the authorization request."),
    ("missing_parameters", "Invalid request. Please try again."),
    ("invalid_state", "Session expired. Please try again."),
    ("exchange_failed", "Failed to complete the connection. Please try again."),
    ("server_error", "Server error occurred. Please contact support."),
    ("account_already_connected", "This Stripe account is already connected to another freelancer."),
    ("no_such_reason", "An unknown error occurred."),
    ("", "An unknown error occurred."),
    ("<script>alert(1)</script>", "An unknown error occurred."),
])
def test_error_page_explains_each_reason(client: TestClient, reason: str, message: str) -> None:
    response = client.get("/freelancer/stripe/error", params={"reason": reason})

    assert response.status_code == 200
    assert "Connection Failed" in response.text
    assert message.replace("'", "&#39;") in response.text
    assert '<a class="button inline" href="/freelancer/payment-settings">Try Again</a>' in response.text
    assert "<script" not in response.text
    if reason not in ERROR_MESSAGES:
        assert message == UNKNOWN_ERROR
        assert (reason or "\x00") not in response.text


# ---- payment settings for connected accounts -------------------------------------------------


def test_active_standard_account_shows_connected_without_finish_onboarding(
    client: TestClient, settings: Settings, session_factory: sessionmaker[Session],
    freelancer_id: int,
) -> None:
    account_id = connect_account(session_factory, freelancer_id, ConnectionMethod.OAUTH,
                                 type="standard")
    sign_in(client, settings, freelancer_id)

    page = client.get(SETTINGS_PATH)

    assert page.status_code == 200
    assert "Stripe Connected" in page.text and "You&#39;re all set to receive payments" in page.text
    assert 'data-testid="status">ACTIVE<' in page.text
    assert 'data-testid="verified">Yes<' in page.text
    assert f'data-testid="account-id">{account_id}<' in page.text
    assert "Disconnect Stripe Account" in page.text
    assert "Finish onboarding" not in page.text and "Connect with Stripe" not in page.text


def test_unfinished_express_account_offers_finish_onboarding_with_plain_requirements(
    client: TestClient, settings: Settings, session_factory: sessionmaker[Session],
    freelancer_id: int,
) -> None:
    connect_account(
        session_factory, freelancer_id, ConnectionMethod.ACCOUNT_LINK,
        details_submitted=False, charges_enabled=False, payouts_enabled=False,
        requirements={"currently_due": ["external_account", "individual.dob.day",
                                        "individual.dob.month", "<script>alert(1)</script>"],
                      "past_due": ["external_account"], "eventually_due": [],
                      "pending_verification": [], "current_deadline": 1893456000,
                      "disabled_reason": "requirements.past_due"},
    )
    sign_in(client, settings, freelancer_id)

    page = client.get(SETTINGS_PATH)

    assert page.status_code == 200
    assert 'data-testid="status">PENDING<' in page.text  # never submitted: onboarding pending
    assert 'data-testid="verified">Pending<' in page.text
    assert "Finish onboarding" in page.text
    assert "Bank account or debit card for payouts" in page.text
    assert "(past due)" in page.text
    assert page.text.count("Date of birth") == 1  # day/month/year: one line
    assert "01 January 2030" in page.text  # the deadline
    assert "Required information is past due" in page.text
    assert "<script" not in page.text and "&lt;script&gt;" in page.text


def test_onboarding_incomplete_notice(client: TestClient, settings: Settings,
                                      freelancer_id: int) -> None:
    sign_in(client, settings, freelancer_id)

    page = client.get(SETTINGS_PATH, params={"onboarding": "incomplete"})

    assert page.status_code == 200
    assert "You left Stripe&#39;s onboarding before finishing" in page.text


def test_unknown_notice_key_shows_nothing(client: TestClient, settings: Settings,
                                          freelancer_id: int) -> None:
    sign_in(client, settings, freelancer_id)

    page = client.get(SETTINGS_PATH, params={"notice": "<b>hacked</b>"})

    assert page.status_code == 200
    assert "hacked" not in page.text and 'class="notice' not in page.text


# ---- disconnect confirmation -------------------------------------------------------------------


def test_disconnect_asks_for_confirmation_then_disconnects(
    client: TestClient, settings: Settings, session_factory: sessionmaker[Session],
    freelancer_id: int,
) -> None:
    # An Express account the platform created is detached locally: Stripe is not called.
    account_id = connect_account(session_factory, freelancer_id, ConnectionMethod.ACCOUNT_LINK)
    sign_in(client, settings, freelancer_id)
    settings_page = client.get(SETTINGS_PATH)
    assert 'href="/freelancer/disconnect">Disconnect Stripe Account</a>' in settings_page.text

    confirm = client.get("/freelancer/disconnect")

    assert confirm.status_code == 200
    assert "Are you sure you want to disconnect your Stripe account?" in confirm.text
    assert "Yes, disconnect" in confirm.text
    assert '<a class="button secondary" href="/freelancer/payment-settings">Cancel</a>' in confirm.text
    assert account_id in confirm.text
    with session_factory() as session:  # looking at the confirmation changes nothing
        assert get_freelancer(session, freelancer_id=freelancer_id).stripe_account_id == account_id

    done = client.post("/freelancer/disconnect", data={"csrf_token": csrf_of(confirm.text)})

    assert done.status_code == 303
    assert done.headers["location"] == f"{SETTINGS_PATH}?notice=disconnected"
    page = client.get(done.headers["location"])
    assert page.status_code == 200
    assert "Your Stripe account was disconnected." in page.text
    assert 'data-testid="status">NOT_CONNECTED<' in page.text
    with session_factory() as session:
        assert get_freelancer(session, freelancer_id=freelancer_id).stripe_account_id is None


def test_disconnect_when_not_connected(client: TestClient, settings: Settings,
                                       freelancer_id: int) -> None:
    sign_in(client, settings, freelancer_id)
    csrf = csrf_of(client.get(SETTINGS_PATH).text)

    confirm = client.get("/freelancer/disconnect")
    assert confirm.status_code == 303
    assert confirm.headers["location"] == SETTINGS_PATH

    response = client.post("/freelancer/disconnect", data={"csrf_token": csrf})
    assert response.status_code == 409
    assert "no connected Stripe account" in response.text
    assert 'data-testid="status">NOT_CONNECTED<' in response.text


# ---- connecting through the emulator (the real SDK, no mocks) ------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with running_emulator() as handle:
        yield handle


@pytest.fixture
def emulated(emulator: EmulatorHandle, session_factory: sessionmaker[Session]
             ) -> Iterator[tuple[TestClient, Settings]]:
    """A client of a service whose Stripe is the emulator (reset for each test)."""
    emulator.reset()
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url)
    emulator.configure(backend_url=settings.backend_url)
    with TestClient(create_app(settings, session_factory=session_factory),
                    follow_redirects=False) as client:
        yield client, settings


def test_connect_with_stripe_redirects_to_the_emulator_consent_page(
    emulated: tuple[TestClient, Settings], emulator: EmulatorHandle,
    session_factory: sessionmaker[Session], freelancer_id: int,
) -> None:
    client, settings = emulated
    sign_in(client, settings, freelancer_id)
    csrf = csrf_of(client.get(SETTINGS_PATH).text)

    response = client.post("/freelancer/connect", data={
        "method": "oauth", "csrf_token": csrf,
        "next": "https://evil.example/", "url": "https://evil.example/",  # ignored
    })

    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert f"{target.scheme}://{target.netloc}" == emulator.base_url
    assert target.path == "/oauth/authorize"
    query = parse_qs(target.query)
    assert query["client_id"] == [TEST_CLIENT_ID]
    assert query["redirect_uri"] == [settings.oauth_redirect_uri]
    assert query["scope"] == ["read_write"] and query["response_type"] == ["code"]
    assert len(query["state"][0]) >= 32
    assert query["stripe_user[email]"] == ["ada@example.com"]
    assert attempts(session_factory) == 1


def test_create_a_new_account_redirects_to_the_emulator_onboarding_page(
    emulated: tuple[TestClient, Settings], emulator: EmulatorHandle,
    session_factory: sessionmaker[Session], freelancer_id: int,
) -> None:
    client, settings = emulated
    sign_in(client, settings, freelancer_id)
    csrf = csrf_of(client.get(SETTINGS_PATH).text)

    response = client.post("/freelancer/connect", data={"method": "onboarding",
                                                        "csrf_token": csrf})

    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert f"{target.scheme}://{target.netloc}" == emulator.base_url
    assert target.path.startswith("/_emulator/onboarding/")
    # The Express account exists now; until onboarding is done, the page offers to finish it
    # (a fresh account's requirements are past due at Stripe, so it is not payable yet).
    account_id = account_id_of(session_factory, freelancer_id)
    assert account_id is not None
    page = client.get(SETTINGS_PATH)
    assert page.status_code == 200
    assert f'data-testid="account-id">{account_id}<' in page.text
    assert 'data-testid="status">ACTIVE<' not in page.text
    assert "Finish onboarding" in page.text


# ---- errors from Stripe become words, not tracebacks -----------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_stripe_unreachable_shows_a_friendly_message(
    session_factory: sessionmaker[Session], freelancer_id: int,
) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    settings = make_settings(stripe_api_base=dead, stripe_connect_base=dead,
                             stripe_connect_timeout_seconds=1, stripe_timeout_seconds=2)
    with TestClient(create_app(settings, session_factory=session_factory),
                    follow_redirects=False) as client:
        sign_in(client, settings, freelancer_id)
        csrf = csrf_of(client.get(SETTINGS_PATH).text)

        response = client.post("/freelancer/connect",
                               data={"method": "onboarding", "csrf_token": csrf})

    assert response.status_code == 503
    assert "text/html" in response.headers["content-type"]
    assert "Stripe could not complete the request just now" in response.text
    assert "Traceback" not in response.text and "127.0.0.1" not in response.text
    assert 'data-testid="status">NOT_CONNECTED<' in response.text


# ---- headers and scripts ---------------------------------------------------------------------


def test_every_page_has_the_csp_and_no_script(
    client: TestClient, settings: Settings, session_factory: sessionmaker[Session],
    freelancer_id: int,
) -> None:
    responses = [client.get("/freelancer/login?token=bad"), client.get(SETTINGS_PATH),
                 client.get("/freelancer/stripe/success?accountId=acct_1"),
                 client.get("/freelancer/stripe/error?reason=access_denied")]
    connect_account(session_factory, freelancer_id, ConnectionMethod.ACCOUNT_LINK,
                    details_submitted=False)
    sign_in(client, settings, freelancer_id)
    page = client.get(SETTINGS_PATH)
    responses += [page, client.get("/freelancer/disconnect"),
                  client.post("/freelancer/connect", data={"method": "oauth"})]

    for response in responses:
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "script-src" not in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"
        assert "<script" not in response.text.lower()
        assert "http://" not in response.text and "https://" not in response.text  # no external assets

    css = client.get("/freelancer/assets/pages.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


# ---- the link command --------------------------------------------------------------------------


def test_link_command_prints_a_working_link_by_email_or_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str,
    session_factory: sessionmaker[Session], freelancer_id: int, client: TestClient,
) -> None:
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BACKEND_URL", "http://127.0.0.1:8000")

    assert links.main(["ADA@example.com", "--minutes", "10"]) == 0
    by_email = capsys.readouterr().out.strip()
    assert links.main([str(freelancer_id)]) == 0
    by_id = capsys.readouterr().out.strip()

    for link in (by_email, by_id):
        assert link.startswith("http://127.0.0.1:8000/freelancer/login?token=")
        parts = urlsplit(link)
        response = client.get(f"{parts.path}?{parts.query}")
        assert response.status_code == 303


def test_link_command_refuses_an_unknown_freelancer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str,
    freelancer_id: int,
) -> None:
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    monkeypatch.setenv("DATABASE_URL", database_url)

    assert links.main(["nobody@example.com"]) == 2
    assert links.main(["424242"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "nobody@example.com" in captured.err and "424242" in captured.err
