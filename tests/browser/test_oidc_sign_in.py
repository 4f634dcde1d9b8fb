"""Company sign-in to the dashboard in Chromium, through a local OpenID Connect provider
(issue 19).

The provider is ``oidc-provider-mock`` from PyPI (a maintained test provider on Authlib), run
by this test on 127.0.0.1 with three people whose ``groups`` claim differs. The dashboard runs
as ``streamlit run`` with ``DASHBOARD_SIGN_IN=oidc`` and the provider in
``.streamlit/secrets.toml``. An admin-group and a manager-group user each sign in through the
provider's page and see exactly their role's pages; a user of no mapped group sees only the
message; logging out ends the session; the audit log names the identities the provider asserted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import oidc_provider_mock
import pytest
import werkzeug.serving
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dashboard.navigation import PAGES
from emulator.testing import EmulatorHandle
from lib.models import AuditLog
from tests.browser.conftest import Screenshot
from tests.browser.dashboard_server import running_dashboard
from tests.browser.test_dashboard import settle, sidebar_titles
from tests.support.servers import HOST, free_port

pytestmark = pytest.mark.browser

ROLE_MAP = ("connect-ops-admins=admin,connect-ops-finance=finance,"
            "connect-ops-managers=manager")
PEOPLE = [
    oidc_provider_mock.User(sub="ada-admin", claims={
        "email": "ada@corp.example", "name": "Ada Admin", "groups": ["connect-ops-admins"]}),
    oidc_provider_mock.User(sub="max-manager", claims={
        "email": "max@corp.example", "name": "Max Manager",
        "groups": ["connect-ops-managers", "everyone"]}),
    oidc_provider_mock.User(sub="nora-nobody", claims={
        "email": "nora@corp.example", "name": "Nora Nobody", "groups": ["sales"]}),
]
#: Every page, in menu order: the whole sidebar shows (grouped, expanded), nothing cut off.
ADMIN_PAGES = [spec.title for spec in PAGES]
MANAGER_PAGES = ["Overview", "Connection metrics"]


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The local OIDC provider on 127.0.0.1 (plain http: a test, hence Authlib's opt-in)."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    server = werkzeug.serving.make_server(
        HOST, 0, oidc_provider_mock.app(user_claims=PEOPLE, require_nonce=True), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def dashboard(provider: str, emulator_server: EmulatorHandle, database_url: str,
              tmp_path: Path) -> Iterator[str]:
    port = free_port()
    secrets = tmp_path / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://{HOST}:{port}/oauth2callback"\n'
        'cookie_secret = "cookie-secret-for-the-oidc-browser-test-0123456789"\n'
        'client_id = "connect-ops-dashboard"\n'
        'client_secret = "connect-ops-dashboard-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n')
    with running_dashboard(
        database_url=database_url, emulator_url=emulator_server.base_url,
        backend_url="http://127.0.0.1:9", workdir=tmp_path, port=port,
        extra_env={"DASHBOARD_SIGN_IN": "oidc", "OIDC_ROLE_MAP": ROLE_MAP,
                   "AUTHLIB_INSECURE_TRANSPORT": "1"},
    ) as url:
        yield url


def sign_in(page: Page, url: str, who: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Sign in with your company account").click()
    # The provider's own page: pick the person (the mock's "predefined users").
    page.get_by_role("button", name=who, exact=True).click()
    page.wait_for_url(f"{url}/**")
    settle(page)


def first_page_shown(page: Page) -> None:
    """Both roles land on the Overview; wait until it has rendered (the first run is slow)."""
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible(timeout=30_000)
    page.get_by_test_id("stMetric").first.wait_for(state="visible", timeout=30_000)
    settle(page)


def sign_out(page: Page, url: str) -> None:
    page.get_by_test_id("stSidebar").get_by_role("button", name="Log out").click()
    # Streamlit ends the session and sends the browser to the provider's end of session.
    page.wait_for_url(lambda current: not current.startswith(url), timeout=20_000)
    page.goto(url)
    expect(page.get_by_role("button", name="Sign in with your company account")).to_be_visible()


def audit(session_factory: sessionmaker[Session]) -> list[tuple[str, str | None, str, str]]:
    with session_factory() as session:
        return [(e.actor, e.actor_role, e.action, e.result) for e in session.scalars(
            select(AuditLog).where(AuditLog.action.like("auth.%")).order_by(AuditLog.id))]


def test_admin_and_manager_sign_in_through_the_provider(
    page: Page, dashboard: str, screenshot: Screenshot,
    session_factory: sessionmaker[Session],
) -> None:
    sign_in(page, dashboard, "ada-admin")
    first_page_shown(page)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Signed in as ada@corp.example")).to_be_visible()
    expect(sidebar.get_by_text("Role: admin")).to_be_visible()
    assert sidebar_titles(page) == ADMIN_PAGES
    screenshot("01-admin-signed-in")
    sign_out(page, dashboard)

    sign_in(page, dashboard, "max-manager")
    first_page_shown(page)
    expect(sidebar.get_by_text("Signed in as max@corp.example")).to_be_visible()
    assert sidebar_titles(page) == MANAGER_PAGES
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Connection metrics").click()
    expect(page.get_by_role("heading", name="Connection metrics", level=1).first).to_be_visible()
    screenshot("02-manager-signed-in")
    page.goto(f"{dashboard}/accounts")                   # not a manager's page
    expect(page.get_by_text("Page not found")).to_be_visible()
    expect(page.get_by_role("heading", name="Accounts", level=1)).to_have_count(0)
    page.goto(dashboard)
    first_page_shown(page)
    sign_out(page, dashboard)

    assert audit(session_factory) == [
        ("ada@corp.example", "admin", "auth.login", "ok"),
        ("ada@corp.example", None, "auth.logout", "ok"),
        ("max@corp.example", "manager", "auth.login", "ok"),
        ("max@corp.example", None, "auth.logout", "ok"),
    ]


def test_a_person_of_no_mapped_group_sees_only_the_message(
    page: Page, dashboard: str, screenshot: Screenshot,
    session_factory: sessionmaker[Session],
) -> None:
    sign_in(page, dashboard, "nora-nobody")
    expect(page.get_by_text("grants no Connect Ops role")).to_be_visible()
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
    expect(page.get_by_test_id("stDataFrame")).to_have_count(0)
    screenshot("03-no-role")
    assert audit(session_factory) == [("nora@corp.example", "none", "auth.login",
                                       "refused:no_role")]
