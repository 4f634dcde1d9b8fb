"""The Reconciliation page's rows for a person: decisions no retry can make, and drift.

A payout sent long ago with no known outcome (Stripe may have forgotten the idempotency key),
or answered with a saved error no retry can change, is settled by two people: one proposes how
it ended, a second confirms (``lib.payouts.decisions``; the proposer cannot confirm). Drift is
what Stripe's transfer events said that the ledger does not.
"""

from __future__ import annotations

import streamlit as st

from dashboard.context import AppContext
from dashboard.page_helpers import (
    PAGE_SIZE,
    last_page_offset,
    page_offset,
    pager,
    plain,
    show_error,
)
from dashboard.tables import money, show_table
from lib.errors import ConnectOpsError
from lib.labels import payout_status, spelled
from lib.money import Money, format_money
from lib.payouts.decisions import (
    AwaitingPage,
    awaiting_page,
    confirm_decision,
    open_decisions,
    propose_decision,
    withdraw_decision,
)
from lib.payouts.queries import recent_drift
from lib.roles import Operator

FLASH = "reconciliation_flash"
AWAITING_PAGE = "reconciliation_awaiting_page"


def decisions(context: AppContext, operator: Operator) -> None:
    """Rows no retry may settle: one person proposes how they ended, a second confirms."""
    with context.session_factory() as session:
        # 50 at a time, oldest first, filtered in SQL: the same cost with 5 rows or 5,000.
        awaiting = awaiting_page(session, operator=operator, limit=PAGE_SIZE,
                                 offset=page_offset(AWAITING_PAGE, filters=None))
        if awaiting.total and not awaiting.rows:  # settled under the chosen page: the last one
            awaiting = awaiting_page(session, operator=operator, limit=PAGE_SIZE,
                                     offset=last_page_offset(awaiting.total))
        proposals = open_decisions(session, operator=operator)
    if not awaiting.total and not proposals:
        return
    st.subheader("Needs a person's decision")
    st.caption("Sent long ago with no known outcome (Stripe may have forgotten the idempotency "
               "key), or answered with a saved error no retry can change. Look the payout up in "
               "Stripe's dashboard, then record what happened; a second person confirms.")
    if awaiting.total:
        _propose(context, operator, awaiting)
    for decision in proposals:
        said = ("made by " + str(decision.stripe_object_id) if decision.outcome == "paid"
                else "never made")
        st.write(f"Decision #{decision.id}: {decision.subject} #{decision.subject_id} was {said}"
                 f" — proposed by {plain(decision.proposed_by)}: “{plain(decision.reason)}”")
        left, right = st.columns(2)
        if left.button("Confirm", key=f"reconciliation_confirm_{decision.id}", type="primary",
                       disabled=operator.is_same_person(decision.proposed_by),
                       help="A second person confirms; the proposer cannot."):
            try:
                confirm_decision(context.session_factory, gateway=context.gateway,
                                 operator=operator, decision_id=decision.id)
            except ConnectOpsError as exc:
                show_error(exc)
            else:
                st.session_state[FLASH] = ("ok", f"Decision #{decision.id} confirmed; the "
                                                 "ledger now says so.")
                st.rerun()
        if right.button("Withdraw", key=f"reconciliation_withdraw_{decision.id}"):
            try:
                with context.session_factory.begin() as session:
                    withdraw_decision(session, operator=operator, decision_id=decision.id,
                                      reason="withdrawn on the Reconciliation page")
            except ConnectOpsError as exc:
                show_error(exc)
            else:
                st.rerun()


def _propose(context: AppContext, operator: Operator, page: AwaitingPage) -> None:
    awaiting = page.rows
    show_table([{"what": f"{a.subject.capitalize()} #{a.subject_id}", "payout": a.payout_id,
                 "status": spelled(a.status), "amount": money(a.amount_minor, a.currency),
                 "destination": a.destination, "first_sent_at": a.first_sent, "why": a.why}
                for a in awaiting],
               ["what", "payout", "status", "amount", "destination", "first_sent_at", "why"],
               key="reconciliation_awaiting", labels={"first_sent_at": "First sent"})
    pager(page.total, key=AWAITING_PAGE, at_least=page.total_is_lower_bound)
    labels = {(a.subject, a.subject_id): f"{a.subject} #{a.subject_id} · "
              f"{format_money(Money(a.amount_minor, a.currency))}" for a in awaiting}
    with st.form("reconciliation_propose"):
        chosen = st.selectbox("Row (from this page of the table)", list(labels), format_func=labels.__getitem__,
                              key="reconciliation_decide_row")
        outcome = st.radio("What happened at Stripe", ["paid", "not_paid"], horizontal=True,
                           format_func={"paid": "It was made (name the tr_/trr_ object)",
                                        "not_paid": "It was never made"}.__getitem__,
                           key="reconciliation_decide_outcome")
        made_by = st.text_input("Stripe object (tr_… or trr_…)", key="reconciliation_decide_obj")
        reason = st.text_input("How you know (required)", key="reconciliation_decide_reason",
                               max_chars=500)
        if st.form_submit_button("Propose this decision") and chosen is not None:
            try:
                propose_decision(context.session_factory, gateway=context.gateway,
                                 operator=operator, subject=chosen[0], subject_id=chosen[1],
                                 outcome=outcome, stripe_object_id=made_by, reason=reason)
            except ConnectOpsError as exc:
                show_error(exc)
            else:
                st.session_state[FLASH] = ("ok", "Proposed: a second person confirms it below.")
                st.rerun()


def drift(context: AppContext, operator: Operator) -> None:
    """Transfers Stripe reported that the ledger disagrees with (nothing changed on its own)."""
    with context.session_factory() as session:
        rows = recent_drift(session, operator=operator)
    if rows:
        st.subheader("Drift reported by Stripe's events")
        st.caption("Stripe made a transfer the ledger says was not made (or that differs from its "
                   "payout). Nothing was changed automatically: find out why.")
        show_table([{"when": r.occurred_at, "payout": r.payout_id, "transfer": r.transfer,
                     "ledger_says": payout_status(r.ledger_status), "detail": r.detail}
                    for r in rows], ["when", "payout", "transfer", "ledger_says", "detail"],
                   key="reconciliation_drift", labels={"ledger_says": "Ledger says"})
