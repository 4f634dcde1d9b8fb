"""One freelancer's account on the Accounts page: the facts, what Stripe asks, the connection
and payout history, the payout destination, the timeline and the requirement emails.

Read only; the actions under it are ``dashboard.account_actions``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.context import AppContext
from dashboard.destinations import destination_panel
from dashboard.outreach import account_outreach
from dashboard.page_helpers import show_error, status_badge
from dashboard.tables import money, when
from dashboard.timeline import render_timeline
from lib import labels
from lib.account_queries import AccountDetail, account_detail
from lib.errors import ConnectOpsError
from lib.roles import Operator


def load_detail(context: AppContext, operator: Operator, freelancer_id: int) -> AccountDetail | None:
    """The freelancer's detail, or None once lib's refusal or error is shown."""
    try:
        with context.session_factory() as session:
            return account_detail(session, operator=operator, freelancer_id=freelancer_id)
    except ConnectOpsError as exc:
        show_error(exc)
        return None


def show_account(context: AppContext, operator: Operator, detail: AccountDetail) -> None:
    _facts(detail)
    destination_panel(context, operator, detail.freelancer_id)
    _requirements(detail)
    _history(detail)
    render_timeline(context, operator, detail.freelancer_id)
    account_outreach(context, operator, freelancer_id=detail.freelancer_id,
                     label=f"{detail.name} · {detail.email}",
                     due=any(r.category in ("Past due", "Currently due")
                             for r in detail.requirements))


def _facts(detail: AccountDetail) -> None:
    title, badge = st.columns([4, 1])
    title.markdown(f"### {detail.name}\n{detail.email}")
    with badge:
        status_badge(detail.status)
    facts = st.columns(4)
    facts[0].markdown(f"**Stripe account**  \n`{detail.stripe_account_id or 'none'}`")
    facts[1].markdown(f"**Type / method**  \n{(detail.account_type or '–').title()} / "
                      f"{labels.method(detail.connection_method) or '–'}")
    facts[2].markdown(f"**Country**  \n{detail.country or '–'}")
    facts[3].markdown(f"**Last synced**  \n{when(detail.last_synced) or '–'}")
    facts = st.columns(4)
    facts[0].markdown(f"**Charges enabled**  \n{'Yes' if detail.charges_enabled else 'No'}")
    facts[1].markdown(f"**Payouts enabled**  \n{'Yes' if detail.payouts_enabled else 'No'}")
    facts[2].markdown(f"**Details submitted**  \n{'Yes' if detail.details_submitted else 'No'}")
    facts[3].markdown(f"**Deadline**  \n{when(detail.deadline) or 'none'}")
    if detail.disabled_reason:
        st.warning(f"Disabled reason: {detail.disabled_reason_label} (`{detail.disabled_reason}`)")


def _requirements(detail: AccountDetail) -> None:
    st.markdown("**Requirements**")
    if detail.requirements:
        st.dataframe(pd.DataFrame([{"When": r.category, "What": r.label, "Stripe code": r.code}
                                   for r in detail.requirements]),
                     hide_index=True, width="stretch", key="accounts_requirements_table")
    elif detail.stripe_account_id:
        st.caption("Nothing requested by Stripe.")
    else:
        st.caption("No connected account.")
    if detail.capabilities:
        st.markdown("**Capabilities**  \n" + ", ".join(
            f"{name}: {value}" for name, value in sorted(detail.capabilities.items())))


def _history(detail: AccountDetail) -> None:
    st.markdown("**Connection history**")
    if detail.attempts:
        st.dataframe(pd.DataFrame([{
            "Started": when(a.started_at), "Method": labels.method(a.method),
            "Issued by": a.issued_by, "Outcome": labels.outcome(a.outcome),
            "Reason": labels.failure_reason(a.failure_reason),
            "Returned": when(a.returned_at), "Finished": when(a.finished_at),
            "Account": a.stripe_account_id or "",
        } for a in detail.attempts]), hide_index=True, width="stretch",
            key="accounts_attempts_table")
    else:
        st.caption("No connection attempts.")
    st.markdown("**Payout history**")
    if detail.payouts:
        st.dataframe(pd.DataFrame([{
            "Created": when(p.created_at), "Amount": money(p.amount_minor, p.currency),
            "Status": labels.payout_status(p.status), "Transfer": p.stripe_transfer_id or "",
            "Description": p.description,
            "Requested by": p.requested_by,
        } for p in detail.payouts]), hide_index=True, width="stretch",
            key="accounts_payouts_table")
        if detail.payouts_total > len(detail.payouts):
            st.caption(f"The latest {len(detail.payouts)} of {detail.payouts_total} payouts; the "
                       "Payouts page lists them all.")
    else:
        st.caption("No payouts yet.")
