"""Company sign-in through OpenID Connect (``DASHBOARD_SIGN_IN=oidc``), with Streamlit's own
``st.login`` / ``st.user`` / ``st.logout``.

The provider is configured where Streamlit reads it, the ``[auth]`` section of
``.streamlit/secrets.toml`` (see ``.streamlit/secrets.example.toml``); which claim carries the
roles and how its values map to roles are settings (``OIDC_ROLES_CLAIM``, ``OIDC_ROLE_MAP``,
``lib.sso``). Signing in is audited once per ID token with what the provider asserted.
Logging out is audited and ends every session of that person whose ID token is older: the
identity cookie of another browser is no longer honoured (as for password users).
"""

from __future__ import annotations

import logging

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from dashboard.auth import SSO_OPERATOR, client_address
from dashboard.context import AppContext
from lib import login_throttle
from lib.roles import Operator
from lib.sso import SsoIdentity, identity_from_claims, record_sso_login

logger = logging.getLogger(__name__)

SECRETS_HELP = ("DASHBOARD_SIGN_IN=oidc needs the provider in the [auth] section of "
                ".streamlit/secrets.toml: copy .streamlit/secrets.example.toml")


def configured(context: AppContext) -> bool:
    """True when Streamlit has the ``[auth]`` section ``st.login`` needs."""
    try:
        auth = st.secrets.get("auth")
    except FileNotFoundError:
        return False
    if not auth:
        return False
    provider = context.settings.oidc_provider
    return provider is None or provider in auth


def current_identity(context: AppContext) -> SsoIdentity | None:
    """Who the provider says is signed in in this browser, or None."""
    if not st.user.is_logged_in:
        return None
    return identity_from_claims(st.user.to_dict(), settings=context.settings)


def login_page(provider: str | None) -> None:
    """The only page of someone not signed in: a button to the company's provider."""
    st.title("Connect Ops")
    st.caption("Operations desk for the marketplace's Stripe Connect payouts.")
    st.write("Sign in with your company account. Your access is granted by your identity "
             "provider's groups.")
    if st.button("Sign in with your company account", type="primary", key="oidc_login",
                 icon=":material/login:"):
        if provider:
            st.login(provider)
        else:
            st.login()


def audit_sign_in(context: AppContext, identity: SsoIdentity) -> None:
    """Record this sign-in once (lib checks the ID token was not recorded by another tab)."""
    key = (identity.username, identity.issued_at)
    if st.session_state.get("_oidc_audited") == key:
        return
    with context.session_factory.begin() as session:
        record_sso_login(session, identity=identity, client=client_address())
    st.session_state["_oidc_audited"] = key


def signed_out_elsewhere(context: AppContext, identity: SsoIdentity) -> bool:
    """True when this person logged out after this ID token was issued."""
    with context.session_factory() as session:
        logged_out = login_throttle.last_logout(session, username=identity.username)
    if logged_out is None:
        return False
    return identity.issued_at is None or identity.issued_at <= logged_out


def log_out(context: AppContext, identity: SsoIdentity) -> None:
    """Audit the logout, then end the session (Streamlit drops the identity cookie)."""
    try:
        with context.session_factory.begin() as session:
            login_throttle.record_logout(session, username=identity.username,
                                         client=client_address())
    except SQLAlchemyError:
        # Logging out must work even when the database does not: the session still ends.
        logger.exception("could not audit the logout of %s", identity.username)
    st.session_state.pop("_oidc_audited", None)
    st.session_state.pop(SSO_OPERATOR, None)
    st.logout()  # sends the browser to Streamlit's logout (and the provider's end of session)
    st.stop()    # and nothing more is drawn for a signed-out person


def no_role_page(context: AppContext, identity: SsoIdentity) -> None:
    """Signed in, but no group of theirs maps to a role: a clear message and nothing else."""
    st.title("Connect Ops")
    groups = ", ".join(identity.groups) or "none"
    st.error(f"You are signed in as {identity.username}, but your company account grants no "
             "Connect Ops role, so there is nothing here for you. Ask an admin to add you to "
             f"one of the Connect Ops groups in the identity provider (your groups: {groups}).",
             icon=":material/block:")
    if st.button("Log out", key="oidc_logout_no_role"):
        log_out(context, identity)


def sidebar(context: AppContext, identity: SsoIdentity, operator: Operator) -> None:
    """Who is signed in, their role, and the logout button."""
    with st.sidebar:
        st.write(f"Signed in as **{identity.username}**")
        st.caption(f"Role: {operator.role_label} · via your company account")
        if st.button("Log out", key="oidc_logout", icon=":material/logout:"):
            log_out(context, identity)


def sign_in(context: AppContext) -> Operator:
    """The signed-in operator with a role, or render the login / no-role page and stop."""
    if not configured(context):
        st.error(f"Connect Ops is not configured: {SECRETS_HELP}.")
        st.stop()
    st.session_state.pop(SSO_OPERATOR, None)  # set again below, from this run's identity only
    identity = current_identity(context)
    if identity is not None and signed_out_elsewhere(context, identity):
        st.session_state.pop("_oidc_audited", None)
        st.logout()  # ends this session; the next run shows the login page
        st.stop()
    if identity is None:
        def log_in() -> None:
            login_page(context.settings.oidc_provider)

        st.navigation([st.Page(log_in, title="Log in", icon=":material/login:")]).run()
        st.stop()
    audit_sign_in(context, identity)
    if not identity.roles:
        no_role_page(context, identity)
        st.stop()
    operator = identity.operator
    st.session_state[SSO_OPERATOR] = operator  # what the pages' role checks read
    sidebar(context, identity, operator)
    return operator
