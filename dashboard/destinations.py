"""New payout destinations on the Accounts page: the flag, and the admin's confirmation.

A connect flow holds payouts to a freelancer's new account until it is confirmed
(``lib.destinations``). The Accounts page lists the held ones above its table and, in an
account's detail, shows what Stripe reports about the account beside an admin-only form that
confirms it with a reason (audited by lib, which also checks the role).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.context import AppContext
from dashboard.page_helpers import show_error
from dashboard.tables import when
from lib.destinations import (
    MAX_REASON,
    confirm_destination,
    current_destination,
    unconfirmed_destinations,
)
from lib.errors import ConnectOpsError
from lib.roles import Action, Operator

#: How many held destinations the flag lists (the count covers them all).
LISTED = 20


def unconfirmed_flag(context: AppContext, operator: Operator) -> None:
    """A warning naming the freelancers whose new destination is not confirmed yet."""
    try:
        with context.session_factory() as session:
            held, total = unconfirmed_destinations(session, operator=operator, limit=LISTED)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    if not total:
        return
    st.warning(f"{total} new payout destination{'s' if total != 1 else ''} not confirmed yet: "
               "payouts to them are held until the freelancer confirms on their payment "
               "settings, or an admin confirms in the account's detail below.",
               icon=":material/gpp_maybe:")
    with st.expander("New, unconfirmed destinations"):
        st.dataframe(pd.DataFrame([{
            "Freelancer": h.name, "Email": h.email, "New account": h.account_id,
            "Method": h.connection_method or "", "Connected": when(h.connected_at),
        } for h in held]), hide_index=True, width="stretch", key="accounts_unconfirmed_table")
        if total > len(held):
            st.caption(f"The newest {len(held)} of {total}.")


def destination_panel(context: AppContext, operator: Operator, freelancer_id: int) -> None:
    """In an account's detail: an unconfirmed destination's facts, and the admin's confirmation."""
    try:
        with context.session_factory() as session:
            destination = current_destination(session, freelancer_id=freelancer_id)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    if destination is None or destination.confirmed:
        return
    facts = destination.facts
    st.warning(
        f"**New payout destination, not confirmed.** Payouts to `{facts.account_id}` are held "
        f"since {when(destination.connected_at) or 'it was connected'}. Stripe reports: email "
        f"{facts.email or 'none'} · business name {facts.business_name or 'none'} · pays out to "
        f"{facts.bank or 'no bank account yet'}.",
        icon=":material/gpp_maybe:")
    if not operator.can(Action.CONFIRM_DESTINATION):
        return
    with st.form("accounts_confirm_destination_form"):
        reason = st.text_input(
            "Reason (kept in the audit log)", max_chars=MAX_REASON,
            placeholder="How the freelancer confirmed it is theirs, e.g. phone call, ticket 4411",
            key="accounts_confirm_destination_reason")
        submitted = st.form_submit_button("Confirm this destination",
                                          icon=":material/verified_user:")
    if not submitted:
        return
    try:
        with context.session_factory.begin() as session:
            confirm_destination(session, operator=operator, freelancer_id=freelancer_id,
                                account_id=facts.account_id, reason=reason)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    st.session_state["accounts_flash"] = f"{facts.account_id} is confirmed: payouts to it may go."
    st.rerun()
