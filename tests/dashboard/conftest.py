"""AppTest fixtures: the dashboard wired to a test database with the demo users."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from lib.operator_accounts import DEMO_AUTH_PATH
from lib.settings import PROJECT_ROOT
from tests.factories import TEST_CLIENT_ID, TEST_SECRET_KEY

APP = str(PROJECT_ROOT / "dashboard" / "app.py")
DEMO_PASSWORD = "connect-ops-demo"


@pytest.fixture
def dashboard_env(monkeypatch: pytest.MonkeyPatch, database_url: str, engine,
                  tmp_path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no developer .env is read from here
    for name, value in {
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": TEST_SECRET_KEY,
        "STRIPE_CONNECT_CLIENT_ID": TEST_CLIENT_ID,
        "STRIPE_API_BASE": "http://127.0.0.1:9",
        "STRIPE_CONNECT_BASE": "http://127.0.0.1:9",
        "AUTH_CONFIG_PATH": str(DEMO_AUTH_PATH),
        "AUTH_COOKIE_KEY": "cookie-key-for-tests-only-0123456789",
    }.items():
        monkeypatch.setenv(name, value)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    # The pages' engine (dashboard.context) is disposed as its cache entry is released: before
    # this test's database goes, not whenever the garbage collector finds its connections.
    st.cache_resource.clear()


@pytest.fixture
def app(dashboard_env: None) -> Callable[..., AppTest]:
    """Build an AppTest; ``as_user`` pre-sets the session of a logged-in user."""

    def build(as_user: str | None = None, roles: list[str] | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=30)
        if as_user is not None:
            at.session_state["authentication_status"] = True
            at.session_state["username"] = as_user
            at.session_state["name"] = as_user.title()
            at.session_state["roles"] = roles if roles is not None else [as_user]
        return at

    return build
