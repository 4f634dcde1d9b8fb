"""Connect Ops dashboard entry point: only a router.

Login first; then ``st.navigation`` over exactly the pages this user's roles allow. Anonymous
users get only the login page. Two sign-ins: the users file (streamlit-authenticator, the
default and the demo's) or the company's OpenID Connect provider (``DASHBOARD_SIGN_IN=oidc``,
``dashboard.oidc``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the project root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402
from streamlit_authenticator.utilities import LoginError  # noqa: E402

from dashboard.auth import (  # noqa: E402
    apply_pending_cookie,
    audit_logout,
    cookie_honoured,
    current_operator,
    get_authenticator,
    login_form,
    session_revoked,
)
from dashboard.cache import invalidate_after_changes  # noqa: E402
from dashboard.context import get_context  # noqa: E402
from dashboard.navigation import navigation_for  # noqa: E402
from dashboard.oidc import sign_in as oidc_sign_in  # noqa: E402
from dashboard.ui import mode_banner  # noqa: E402
from dashboard.worker_health import warn_if_worker_stopped  # noqa: E402
from lib.db import utcnow  # noqa: E402

st.set_page_config(page_title="Connect Ops", page_icon=":material/payments:", layout="wide")
context = get_context()

if context.settings.dashboard_sign_in == "oidc":
    mode_banner(context.settings)
    oidc_operator = oidc_sign_in(context)  # the login or no-role page stops the run
    invalidate_after_changes(context.session_factory)
    st.navigation(navigation_for(oidc_operator), expanded=True).run()
    st.stop()

authenticator = get_authenticator(context)


def login_page() -> None:
    st.title("Connect Ops")
    st.caption("Operations desk for the marketplace's Stripe Connect payouts.")
    apply_pending_cookie(authenticator)  # a logout's cookie deletion, in a run that completes
    if cookie_honoured(context, authenticator):
        try:
            authenticator.login(location="unrendered")  # re-login from a valid cookie only
        except LoginError as exc:
            st.error(str(exc))
    else:
        authenticator.cookie_controller.delete_cookie()  # issued before a logout: revoked
    if st.session_state.get("authentication_status"):
        st.session_state["_auth_signed_in_at"] = utcnow()
        st.rerun()
    login_form(context, authenticator)  # throttled and audited (dashboard.auth)


mode_banner(context.settings)
operator = current_operator()
if operator is None:
    st.navigation([st.Page(login_page, title="Log in", icon=":material/login:")]).run()
else:
    if session_revoked(context, operator):
        # Logged out in another tab or browser: this session ends too.
        authenticator.authentication_controller.logout()
        st.rerun()
    # Built once per run: each st.Page costs a quarter of a millisecond, on every page.
    sections = navigation_for(operator)
    with st.sidebar:
        apply_pending_cookie(authenticator)  # the login's cookie, in a run that completes
        st.write(f"Signed in as **{st.session_state.get('name') or operator.username}**")
        st.caption(f"Role: {operator.role_label}")
        authenticator.logout(button_name="Log out", location="sidebar", key="logout_button",
                             callback=audit_logout(context))
    if not st.session_state.get("authentication_status"):
        st.rerun()  # logged out just now: straight back to the login page
    if not sections:
        st.warning("Your account has no role that opens any page. Ask an admin.")
        st.stop()
    invalidate_after_changes(context.session_factory)
    warn_if_worker_stopped(context, operator)
    st.navigation(sections, expanded=True).run()
