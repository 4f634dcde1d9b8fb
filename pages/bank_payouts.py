"""Failed bank payouts: which freelancers are not receiving their money at their bank, and why?

Stripe pays each connected account's balance out to the freelancer's bank; when the bank refuses
(closed account, wrong number, …) the money returns to the freelancer's Stripe balance and they
are not paid until they fix their bank details. These payouts reach us as ``payout.*`` Connect
events (``lib.bank_payouts``). Per freelancer: how many failed, the latest reason in plain
words, what to do, whether a later payout went through, and a payment-settings link to send.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.context import get_context
from dashboard.page_helpers import (
    PAGE_SIZE,
    deferred_csv,
    page_offset,
    pager,
    require_page,
    show_error,
)
from dashboard.tables import TIME_ZONE, show_table
from lib.bank_payouts import (
    EXPORT_COLUMNS,
    failed_payouts,
    failures_by_freelancer,
    iter_failure_rows,
)
from lib.errors import ConnectOpsError
from lib.freelancer_links import DEFAULT_LIFETIME, payment_settings_link, payment_settings_page
from lib.roles import Action

operator = require_page(Action.VIEW_BANK_PAYOUTS)
context = get_context()
state = st.session_state
WINDOWS = {"Last 30 days": 30, "Last 90 days": 90, "Last 365 days": 365, "Any time": None}

st.title("Failed bank payouts")
st.caption("Freelancers whose bank refused a payout from their Stripe balance: the money is "
           "back in their Stripe balance and reaches them only once their bank details work.")

window = st.radio("Failed in", list(WINDOWS), horizontal=True, key="bank_payouts_window")
days = WINDOWS[window]
since = datetime.now(UTC) - timedelta(days=days) if days else None
try:
    with context.session_factory() as session:
        people = failures_by_freelancer(session, operator=operator, since=since)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

if not people:
    st.success("No bank payout failed" + (f" in the last {days} days." if days else "."),
               icon=":material/check_circle:")
    st.stop()

open_ = [p for p in people if not p.paid_since]
tiles = st.columns(3)
tiles[0].metric("Still to fix their bank details", len(open_), border=True,
                help="Freelancers with a failed payout and no payout paid since.")
tiles[1].metric("Fixed since", len(people) - len(open_), border=True,
                help="A payout to their bank was paid after the failure.")
tiles[2].metric("Failed payouts", sum(p.failures for p in people), border=True)

# ---- per freelancer ---------------------------------------------------------------------------
st.subheader("Per freelancer")
show_table([{
    "freelancer": p.freelancer_name or "(no freelancer)", "email": p.freelancer_email,
    "stripe_account_id": p.stripe_account_id, "failures": p.failures,
    "failed_amount": p.failed_amounts, "last_failed_at": p.last_failed_at,
    "reason": p.reason, "what_to_do": p.remedy,
    "state": "Paid since: fixed" if p.paid_since else "Still failing",
} for p in people], ["freelancer", "state", "reason", "what_to_do", "failures", "failed_amount",
                     "last_failed_at", "email", "stripe_account_id"],
    key="bank_payouts_people", labels={"failed_amount": "Amount that failed",
                                       "last_failed_at": "Last failure",
                                       "what_to_do": "What they should do"})

reasons: dict[str, int] = {}
for p in people:
    reasons[p.reason] = reasons.get(p.reason, 0) + p.failures
st.markdown("**Why they failed**")
charts.show("bank_failures_by_reason",
            pd.DataFrame([{"reason": r, "failures": n} for r, n in reasons.items()]),
            key="bank_payouts_reasons_chart", height=40 * len(reasons) + 20)

# ---- send them to their payment settings ------------------------------------------------------
st.subheader("Send a freelancer to their payment settings")
reachable = {p.freelancer_id: f"{p.freelancer_name} · {p.freelancer_email}"
             for p in open_ or people if p.freelancer_id is not None}
if reachable:
    chosen = st.selectbox("Freelancer", list(reachable), format_func=reachable.__getitem__,
                          key="bank_payouts_freelancer")
    hours = int(DEFAULT_LIFETIME.total_seconds() // 3600)
    st.caption(f"The page to fix bank details is {payment_settings_page(context.settings)}. "
               f"The link below signs them in to it for {hours} hours: whoever holds it acts "
               "as the freelancer, so send it only to their own email address. Each link is "
               "recorded in the audit log.")
    if operator.can(Action.SEND_SETTINGS_LINK) and st.button(
            "Create payment-settings link", key="bank_payouts_link", icon=":material/link:"):
        try:
            with context.session_factory.begin() as session:
                link = payment_settings_link(session, operator=operator,
                                             settings=context.settings,
                                             freelancer_id=int(chosen))
            state["bank_payouts_issued"] = (link.freelancer_id, link.email, link.url,
                                            link.expires_at)
        except ConnectOpsError as exc:
            show_error(exc)
    issued = state.get("bank_payouts_issued")
    if issued and issued[0] == chosen:
        _, email, url, expires_at = issued
        st.success(f"Send this to {email}; it works until {expires_at:%Y-%m-%d %H:%M} "
                   f"{TIME_ZONE}.", icon=":material/mail:")
        st.code(url, language=None, wrap_lines=True)

# ---- every failure ----------------------------------------------------------------------------
st.subheader("Every failed payout")
offset = page_offset("bank_payouts_page", filters=window)
try:
    with context.session_factory() as session:
        page = failed_payouts(session, operator=operator, since=since, limit=PAGE_SIZE,
                              offset=offset)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()
show_table([{
    "failed_at": r.failed_at, "freelancer": r.freelancer_name or "", "amount": r.amount,
    "reason": r.reason, "failure_code": r.failure_code, "stripe_payout_id": r.stripe_payout_id,
    "stripe_account_id": r.stripe_account_id,
} for r in page.rows], ["failed_at", "freelancer", "amount", "reason", "failure_code",
                        "stripe_payout_id", "stripe_account_id"],
    key="bank_payouts_failures", labels={"failure_code": "Stripe's code"})
if page.total > PAGE_SIZE:
    pager(page.total, key="bank_payouts_page")
if operator.can(Action.EXPORT):
    deferred_csv(f"Download CSV ({page.total:,} failed payouts)", context.session_factory,
                 partial(iter_failure_rows, operator=operator, since=since), EXPORT_COLUMNS,
                 key="bank_payouts_csv", file_name="failed-bank-payouts.csv")
st.caption("Amounts are in each payout's own currency.")
