"""The router: login first, then exactly the pages a role allows."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import DEMO_PASSWORD


def _login(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    at.button[0].click()
    return at.run()


def test_anonymous_user_sees_only_the_login_form(app) -> None:
    at = app().run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert "Connect Ops" in [t.value for t in at.title]
    assert not at.sidebar.button


def test_wrong_password_is_refused(app) -> None:
    at = _login(app().run(), "admin", "not-the-password")
    assert not at.exception
    assert any("incorrect" in e.value for e in at.error)
    assert at.session_state["authentication_status"] is False


def test_demo_admin_logs_in_through_the_form(app) -> None:
    at = _login(app().run(), "admin", DEMO_PASSWORD)
    assert not at.exception
    assert at.session_state["authentication_status"] is True
    assert at.session_state["roles"] == ["admin"]
    assert any("Signed in as" in m.value for m in at.sidebar.markdown)


def test_banner_says_emulator(app) -> None:
    at = app().run()
    assert any("LOCAL EMULATOR" in str(h.proto) for h in at.get("html"))


def test_user_without_role_gets_no_pages(app) -> None:
    at = app(as_user="ghost", roles=[]).run()
    assert not at.exception
    assert any("no role" in w.value for w in at.warning)


def test_missing_cookie_key_is_one_clear_error(app, monkeypatch) -> None:
    monkeypatch.delenv("AUTH_COOKIE_KEY")
    at = app().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Connect Ops is not configured: AUTH_COOKIE_KEY is not set: get it from any long random "
        "string; it signs the dashboard's login cookie."
    ]


def test_demo_users_refused_with_live_key(app, monkeypatch) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_live_" + "k" * 24)
    monkeypatch.delenv("STRIPE_API_BASE")
    monkeypatch.delenv("STRIPE_CONNECT_BASE")
    monkeypatch.setenv("BACKEND_URL", "https://ops.example.com")
    monkeypatch.setenv("STRIPE_CONNECT_CLIENT_ID", "ca_live_platform")
    at = app().run()
    assert not at.exception
    assert any("demo users file" in e.value for e in at.error)
    assert not at.text_input


def test_each_role_is_offered_exactly_its_pages() -> None:
    from dashboard.navigation import PAGES
    from lib.roles import Operator

    def titles(role: str) -> list[str]:
        operator = Operator.from_role_names("x", [role])
        return [p.title for p in PAGES if any(operator.can(a) for a in p.needs)]

    assert titles("manager") == ["Overview", "Connection metrics"]
    assert titles("finance") == ["Accounts", "Requirements due", "Payouts", "Approvals",
                                 "Reversals", "Funding", "Failed bank payouts", "Reconciliation",
                                 "Audit log"]
    assert titles("admin") == [p.title for p in PAGES]


def test_logout_elsewhere_ends_this_session(app, session_factory) -> None:
    from datetime import timedelta

    from lib.db import utcnow
    from lib.login_throttle import record_logout

    at = app(as_user="admin")
    at.session_state["_auth_signed_in_at"] = utcnow() - timedelta(minutes=5)
    at.run()
    assert any("Signed in as" in m.value for m in at.sidebar.markdown)
    with session_factory.begin() as session:
        record_logout(session, username="admin", client=None)
    at.run()
    assert not at.exception
    assert not at.session_state["authentication_status"]
    assert [t.label for t in at.text_input] == ["Username", "Password"]
