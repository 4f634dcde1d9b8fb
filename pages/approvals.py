"""Approvals: payouts at or above the threshold wait here for a second operator.

Approving sends the payout at once (approve, then ``execute_payout`` with the row's own key).
The two-person rule is enforced in ``lib.payouts.approval``: this page lets anyone with the
role press Approve and shows the library's refusal when it is their own request, so the rule
has one home.
"""

from __future__ import annotations

import streamlit as st

from dashboard.context import get_context
from dashboard.page_helpers import (
    PAGE_SIZE,
    page_offset,
    pager,
    require_page,
    show_error,
    show_flash,
)
from dashboard.tables import money, show_table
from lib.errors import ConnectOpsError
from lib.models import PayoutStatus
from lib.payouts import PayoutFilter, approve_payout, execute_payout, list_payouts, reject_payout
from lib.roles import Action

operator = require_page(Action.APPROVE_PAYOUT)
context = get_context()
state = st.session_state
COLUMNS = ["id", "created_at", "freelancer_name", "amount", "currency", "description",
           "requested_by"]

st.title("Approvals")
st.caption("Payouts at or above the approval threshold. A second operator approves (the payout "
           "is then sent) or rejects with a reason; nobody approves their own request.")

show_flash("approvals_flash")


def approve(payout_id: int) -> None:
    factory = context.session_factory
    try:
        with factory.begin() as session:
            approve_payout(session, operator=operator, payout_id=payout_id,
                           audit_refusals_with=factory)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    try:
        payout = execute_payout(factory, gateway=context.gateway, payout_id=payout_id,
                                operator=operator)
    except ConnectOpsError as exc:
        state["approvals_flash"] = ("error", f"Payout #{payout_id} was approved but not sent: "
                                    f"{exc.message}")
    else:
        if payout.status == PayoutStatus.PAID:
            state["approvals_flash"] = ("ok", f"Payout #{payout_id} approved and paid: Stripe "
                                        f"transfer {payout.stripe_transfer_id}.")
        else:
            state["approvals_flash"] = ("error", f"Payout #{payout_id} was approved; it is now "
                                        f"{payout.status}: {payout.error_message or ''}".strip())
    st.rerun()


def reject(payout_id: int, reason: str) -> None:
    factory = context.session_factory
    try:
        with factory.begin() as session:
            reject_payout(session, operator=operator, payout_id=payout_id, reason=reason,
                          audit_refusals_with=factory)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    state["approvals_flash"] = ("ok", f"Payout #{payout_id} rejected.")
    st.rerun()


waiting = PayoutFilter(status=PayoutStatus.PENDING_APPROVAL.value)
try:
    with context.session_factory() as session:
        # 50 at a time, newest first: the same cost with 5 waiting or 50,000 (issue 22).
        page = list_payouts(session, operator=operator, limit=PAGE_SIZE, filters=waiting,
                            offset=page_offset("approvals_page", filters=waiting))
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

if not page.rows:
    st.info("Nothing is waiting for approval.")
    st.stop()

show_table([{**{c: getattr(r, c) for c in COLUMNS}, "amount": money(r.amount_minor, r.currency)}
            for r in page.rows], [c for c in COLUMNS if c != "currency"],
           key="approvals_table", labels={"id": "#"})
pager(page.total, key="approvals_page")

labels = {r.id: f"#{r.id} · {money(r.amount_minor, r.currency)} to {r.freelancer_name} "
                f"(requested by {r.requested_by})" for r in page.rows}
chosen = st.selectbox("Payout", list(labels), format_func=labels.__getitem__,
                      key="approvals_payout")
selected = next(r for r in page.rows if r.id == chosen)
if operator.is_same_person(selected.requested_by):
    st.warning("You requested this payout: a second operator must approve it.")

left, right = st.columns(2)
with left:
    st.subheader("Approve")
    st.caption("Approving sends the payout to Stripe straight away.")
    if st.button("Approve and send", key="approvals_approve", type="primary"):
        approve(int(selected.id))
with right:
    st.subheader("Reject")
    reason = st.text_input("Reason (required)", key="approvals_reason", max_chars=500)
    if st.button("Reject", key="approvals_reject"):
        reject(int(selected.id), reason)
