"""Login with streamlit-authenticator; roles come from the users file, enforcement from lib."""

from __future__ import annotations

import streamlit as st
import streamlit_authenticator as stauth

from dashboard.context import AppContext
from lib.errors import ConfigurationError
from lib.operator_accounts import load_credentials
from lib.roles import Operator


def get_authenticator(context: AppContext) -> stauth.Authenticate:
    """One authenticator per session (it keeps the cookie manager in session state)."""
    if "_authenticator" not in st.session_state:
        settings = context.settings
        try:
            credentials = load_credentials(settings)
        except ConfigurationError as exc:
            st.error(f"Connect Ops is not configured: {exc}")
            st.stop()
        assert settings.auth_cookie_key is not None
        st.session_state["_authenticator"] = stauth.Authenticate(
            credentials,
            cookie_name=settings.auth_cookie_name,
            cookie_key=settings.auth_cookie_key.get_secret_value(),
            cookie_expiry_days=settings.auth_cookie_expiry_days,
            auto_hash=False,
        )
    return st.session_state["_authenticator"]


def current_operator() -> Operator | None:
    """The signed-in operator, or None."""
    if st.session_state.get("authentication_status") is not True:
        return None
    username = st.session_state.get("username")
    if not username:
        return None
    return Operator.from_role_names(str(username), st.session_state.get("roles"))
