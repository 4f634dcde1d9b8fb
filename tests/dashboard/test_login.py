"""Login hardening through the real form: failures audited and throttled, logins and logouts
audited, the lockout message generic."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from lib.login_throttle import DEFAULT_POLICY
from tests.dashboard.conftest import DEMO_PASSWORD
from tests.dashboard.emulator_env import audit_count, errors


def login(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(password)
    at.button(key="FormSubmitter:login_form-Login").click()
    return at.run()


def test_success_and_logout_are_audited(app, session_factory) -> None:
    at = login(app().run(), "admin", DEMO_PASSWORD)
    assert not at.exception
    assert at.session_state["authentication_status"] is True
    assert audit_count(session_factory, "auth.login") == 1
    at = at.sidebar.button(key="logout_button").click().run()
    assert not at.exception
    assert at.session_state["authentication_status"] is None
    assert audit_count(session_factory, "auth.logout") == 1
    assert [t.label for t in at.text_input] == ["Username", "Password"]


def test_failures_are_audited_then_locked_even_with_the_right_password(
    app, session_factory
) -> None:
    at = app().run()
    for _ in range(DEFAULT_POLICY.max_failures_per_username):
        at = login(at, "finance", "wrong-password")
        assert errors(at) == ["Username or password is incorrect."]
    assert audit_count(session_factory, "auth.login_failed") == 5
    at = login(at, "finance", DEMO_PASSWORD)
    assert not at.exception
    assert at.session_state["authentication_status"] is not True
    (message,) = errors(at)
    assert message.startswith("Too many failed sign-in attempts. Try again in ")
    assert not any(word in message.lower() for word in ("finance", "client", "address", "attempts left"))
    assert audit_count(session_factory, "auth.login_locked") == 1
    assert audit_count(session_factory, "auth.login") == 0
    # Another user is not locked by finance's failures.
    at = login(app().run(), "admin", DEMO_PASSWORD)
    assert at.session_state["authentication_status"] is True


def test_unknown_users_are_throttled_like_known_ones(app, session_factory) -> None:
    at = app().run()
    for _ in range(DEFAULT_POLICY.max_failures_per_username):
        at = login(at, "nobody", "whatever-password")
    at = login(at, "nobody", "whatever-password")
    assert errors(at)[0].startswith("Too many failed sign-in attempts.")


def test_blank_fields_are_not_an_attempt(app, session_factory) -> None:
    at = login(app().run(), "", "")
    assert errors(at) == ["Enter your username and password."]
    assert audit_count(session_factory, "auth.login_failed") == 0
