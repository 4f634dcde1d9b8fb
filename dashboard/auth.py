"""Login with streamlit-authenticator; roles come from the users file, enforcement from lib.

The login form is ours (same labels and button as the library's) so the failed-login throttle
can run *before* the password is checked: a locked username or client gets the lockout message
and bcrypt is never consulted. The password check itself is streamlit-authenticator's
(``authentication_controller.login``), which also fills the session state; its cookie controller
sets the re-login cookie. Every attempt, success, lockout and logout is audited
(``lib.login_throttle``), and the throttle counts those audit rows, so it holds across replicas.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st
import streamlit_authenticator as stauth
from sqlalchemy.exc import SQLAlchemyError

from dashboard.context import AppContext
from lib import login_throttle
from lib.db import utcnow
from lib.errors import ConfigurationError
from lib.operator_accounts import load_credentials
from lib.roles import Operator

logger = logging.getLogger(__name__)


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


#: Where the OpenID Connect sign-in (dashboard.oidc) leaves this run's operator for the pages.
SSO_OPERATOR = "_sso_operator"


def current_operator() -> Operator | None:
    """The signed-in operator, or None."""
    sso = st.session_state.get(SSO_OPERATOR)
    if isinstance(sso, Operator):
        return sso
    if st.session_state.get("authentication_status") is not True:
        return None
    username = st.session_state.get("username")
    if not username:
        return None
    return Operator.from_role_names(str(username), st.session_state.get("roles"))


def _client() -> str | None:
    """The address Streamlit saw (not a spoofable header); None in tests and some proxies."""
    try:
        return st.context.ip_address
    except (AttributeError, RuntimeError):
        return None


#: For the other sign-in (dashboard.oidc): the same address, audited the same way.
client_address = _client


def login_form(context: AppContext, authenticator: stauth.Authenticate) -> None:
    """The login form, throttled and audited; on success the session is signed in."""
    with st.form("login_form"):
        st.subheader("Login")
        username = st.text_input("Username", key="login_username", autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password",
                                 autocomplete="current-password")
        submitted = st.form_submit_button("Login")
    if not submitted:
        return
    if not username.strip() or not password:
        st.error("Enter your username and password.")
        return
    client = _client()
    factory = context.session_factory
    with factory.begin() as session:
        decision = login_throttle.check_login_allowed(session, username=username, client=client)
        if not decision.allowed:
            login_throttle.record_login_locked(session, username=username, client=client,
                                               decision=decision)
    if not decision.allowed:
        logger.warning("login locked for %r", login_throttle.normalise_username(username))
        st.error(decision.message)
        return
    ok = authenticator.authentication_controller.login(username.strip(), password)
    with factory.begin() as session:
        if ok:
            operator = current_operator()
            login_throttle.record_login_ok(
                session, username=username, client=client,
                role_label=operator.role_label if operator else None)
        else:
            login_throttle.record_login_failed(session, username=username, client=client)
    if not ok:
        st.session_state["authentication_status"] = False
        st.error("Username or password is incorrect.")
        return
    st.session_state["_auth_signed_in_at"] = utcnow()
    # The cookie is written by a browser component: render it in the next (complete) run, not
    # in this one that st.rerun() cuts short before the browser may have run it.
    st.session_state["_auth_cookie"] = "set"
    st.rerun()


def apply_pending_cookie(authenticator: stauth.Authenticate) -> None:
    """Write or delete the re-login cookie decided by the previous run (login or logout)."""
    pending = st.session_state.pop("_auth_cookie", None)
    if pending == "set":
        authenticator.cookie_controller.set_cookie()
    elif pending == "delete":
        authenticator.cookie_controller.delete_cookie()


def cookie_honoured(context: AppContext, authenticator: stauth.Authenticate) -> bool:
    """False when the browser's re-login cookie predates its user's last logout."""
    token = authenticator.cookie_controller.get_cookie()
    if not token or not isinstance(token, dict) or "username" not in token:
        return True  # nothing to re-login with: the library does nothing either
    days = context.settings.auth_cookie_expiry_days
    issued = datetime.fromtimestamp(float(token["exp_date"]), tz=UTC) - timedelta(days=days)
    with context.session_factory() as session:
        logged_out = login_throttle.last_logout(session, username=str(token["username"]))
    return logged_out is None or issued > logged_out


def session_revoked(context: AppContext, operator: Operator) -> bool:
    """True when this user logged out somewhere after this session signed in."""
    started = st.session_state.get("_auth_signed_in_at")
    if started is None:
        return False
    with context.session_factory() as session:
        logged_out = login_throttle.last_logout(session, username=operator.username)
    return logged_out is not None and logged_out >= started


def audit_logout(context: AppContext) -> Any:
    """A logout callback for streamlit-authenticator that records who logged out."""

    def callback(details: dict[str, Any]) -> None:
        username = str(details.get("username") or "")
        st.session_state["_auth_cookie"] = "delete"
        st.session_state.pop("_auth_signed_in_at", None)
        if not username:
            return
        try:
            with context.session_factory.begin() as session:
                login_throttle.record_logout(session, username=username, client=_client())
        except SQLAlchemyError:
            # Logging out must work even when the database does not: the session still ends.
            logger.exception("could not audit the logout of %s", username)

    return callback
