"""The admin actions under an account's detail: refresh from Stripe, a new onboarding or OAuth
link, disconnect (after a confirmation), and "Send payout" (the Payouts page, preselected).

Every action calls ``lib`` with the operator, so the role check that matters is lib's; the
buttons are only hidden from roles that cannot use them. After an action the cached account
reads are dropped so the page shows the new state.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from dashboard import cache
from dashboard.context import AppContext
from dashboard.navigation import PAGES_DIR
from dashboard.page_helpers import show_error
from lib.account_queries import AccountDetail
from lib.connect_flow import create_connect_link, disconnect
from lib.errors import ConnectOpsError
from lib.models import ConnectionMethod
from lib.roles import Action, Operator
from lib.sync import refresh_account

ACTIONS = (Action.REFRESH_ACCOUNT, Action.GENERATE_LINK, Action.DISCONNECT, Action.REQUEST_PAYOUT)


def account_actions(context: AppContext, operator: Operator, detail: AccountDetail) -> None:
    """The buttons this operator may use, what they did, and the disconnect question."""
    if not any(operator.can(a) for a in ACTIONS):
        return
    st.markdown("**Actions**")
    clicked = _buttons(operator, detail)
    state = st.session_state
    freelancer_id = detail.freelancer_id
    if clicked.get("refresh") and detail.stripe_account_id:
        _refresh(context, operator, detail.stripe_account_id)
    if clicked.get("onboarding") or clicked.get("oauth"):
        _act("Asking Stripe for a link…",
             lambda: _new_link(context, operator, freelancer_id, oauth=bool(clicked.get("oauth"))))
    if clicked.get("disconnect"):
        state["accounts_confirm_disconnect"] = freelancer_id
    if clicked.get("payout"):
        state["payouts_freelancer_id"] = freelancer_id
        st.switch_page(str(PAGES_DIR / "payouts.py"))

    flash = state.pop("accounts_flash", None)
    if flash:
        st.success(flash, icon=":material/check_circle:")
    _show_link(freelancer_id)
    if state.get("accounts_confirm_disconnect") == freelancer_id and detail.stripe_account_id:
        _confirm_disconnect(context, operator, detail, detail.stripe_account_id)


def _buttons(operator: Operator, detail: AccountDetail) -> dict[str, bool]:
    buttons = st.columns(5)
    clicked: dict[str, bool] = {}
    if operator.can(Action.REFRESH_ACCOUNT):
        clicked["refresh"] = buttons[0].button(
            "Refresh from Stripe", key="accounts_refresh", icon=":material/sync:",
            disabled=detail.stripe_account_id is None)
    if operator.can(Action.GENERATE_LINK):
        clicked["onboarding"] = buttons[1].button(
            "New onboarding link", key="accounts_onboarding_link", icon=":material/link:",
            help="Hosted onboarding for an Express account (created if needed).")
        clicked["oauth"] = buttons[2].button(
            "New OAuth link", key="accounts_oauth_link", icon=":material/key:",
            help="For a freelancer who already has a Standard Stripe account.")
    if operator.can(Action.DISCONNECT):
        clicked["disconnect"] = buttons[3].button(
            "Disconnect…", key="accounts_disconnect", icon=":material/link_off:",
            disabled=detail.stripe_account_id is None)
    if operator.can(Action.REQUEST_PAYOUT):
        clicked["payout"] = buttons[4].button(
            "Send payout", key="accounts_send_payout", icon=":material/payments:")
    return clicked


def _act(label: str, run: Callable[[], object]) -> bool:
    """Run a lib action; its error is one message. True when it succeeded."""
    try:
        with st.spinner(label):
            run()
    except ConnectOpsError as exc:
        show_error(exc)
        return False
    cache.clear_account_reads()
    return True


def _refresh(context: AppContext, operator: Operator, account_id: str) -> None:
    if _act("Reading the account from Stripe…", lambda: refresh_account(
            context.session_factory, gateway=context.gateway, operator=operator,
            account_id=account_id)):
        st.session_state["accounts_flash"] = f"Refreshed {account_id} from Stripe."
        st.rerun()


def _new_link(context: AppContext, operator: Operator, freelancer_id: int, *,
              oauth: bool) -> None:
    method = ConnectionMethod.OAUTH if oauth else ConnectionMethod.ACCOUNT_LINK
    link = create_connect_link(context.session_factory, gateway=context.gateway,
                               settings=context.settings, operator=operator,
                               freelancer_id=freelancer_id, method=method)
    st.session_state["accounts_link"] = (freelancer_id, link.url, link.expires_in,
                                         link.method.value)


def _show_link(freelancer_id: int) -> None:
    """The link made for this freelancer (kept while their detail is open)."""
    link = st.session_state.get("accounts_link")
    if not link or link[0] != freelancer_id:
        return
    _, url, expires_in, method = link
    kind = "OAuth consent" if method == "oauth" else "onboarding"
    st.success(f"New {kind} link: single use, valid for about {max(expires_in // 60, 1)} "
               "minute(s). Send it to the freelancer now.", icon=":material/link:")
    st.code(url, language=None)


def _confirm_disconnect(context: AppContext, operator: Operator, detail: AccountDetail,
                        account_id: str) -> None:
    state = st.session_state
    st.warning(f"Disconnect {detail.name} from {account_id}? Payouts to this "
               "freelancer stop until they connect again. The history is kept.",
               icon=":material/warning:")
    yes, no = st.columns(2)
    if yes.button("Yes, disconnect", type="primary", key="accounts_disconnect_confirm"):
        state.pop("accounts_confirm_disconnect", None)
        if _act("Disconnecting…", lambda: disconnect(
                context.session_factory, gateway=context.gateway, operator=operator,
                freelancer_id=detail.freelancer_id)):
            state["accounts_flash"] = f"{detail.name} is disconnected."
            st.rerun()
    if no.button("Cancel", key="accounts_disconnect_cancel"):
        state.pop("accounts_confirm_disconnect", None)
        st.rerun()
