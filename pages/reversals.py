"""Reversals: take (part of) a paid payout back, with a reason; large ones need a second person.

Every rule lives in ``lib.payouts.reversal``: the amount is reserved on the payout before Stripe
is called (two admins cannot reverse more than was paid), a request token makes a double click
one reversal, the likely-duplicate guard names an earlier reversal of the same amount, and a
reversal at or above the currency's approval threshold waits here for someone who did not ask.
The forms are ``dashboard.reversal_actions``.
"""

from __future__ import annotations

import streamlit as st

from dashboard.context import get_context
from dashboard.page_helpers import PAGE_SIZE, page_offset, pager, require_page, show_flash
from dashboard.reversal_actions import FLASH, actionable, approvals, request_form, to_send
from dashboard.tables import money, show_table
from lib.labels import spelled
from lib.payouts.queries import reversal_page
from lib.roles import Action

operator = require_page(Action.VIEW_PAYOUTS)
context = get_context()
COLUMNS = ["id", "created_at", "payout_id", "freelancer_name", "amount", "status", "reason",
           "requested_by", "approved_by", "stripe_reversal_id", "error_message"]
LABELS = {"id": "Reversal", "payout_id": "Payout", "freelancer_name": "Freelancer",
          "stripe_reversal_id": "Stripe reversal", "error_message": "Error",
          "created_at": "Requested"}

st.title("Reversals")
st.caption("Money taken back from a freelancer's Stripe balance after a payout (an invoice paid "
           "twice, a cancelled job). Only what remains of a paid payout can be reversed; at or "
           "above the approval threshold a second person approves first.")
show_flash(FLASH)

if operator.can(Action.REVERSE_PAYOUT):
    request_form(context, operator)
if operator.can(Action.APPROVE_PAYOUT) or operator.can(Action.REVERSE_PAYOUT):
    found = actionable(context, operator)
    if operator.can(Action.APPROVE_PAYOUT):
        approvals(context, operator, found)
    if operator.can(Action.REVERSE_PAYOUT):
        to_send(context, operator, found)

st.subheader("Reversals")
with context.session_factory() as session:
    # 50 at a time, newest first: the same cost with 30 reversals or 30,000 (issue 22).
    page = reversal_page(session, operator=operator, limit=PAGE_SIZE,
                         offset=page_offset("reversals_page", filters=None))
if page.rows:
    show_table([{**{c: getattr(r, c) for c in COLUMNS},
                 "amount": money(r.amount_minor, r.currency), "status": spelled(r.status)}
                for r in page.rows], COLUMNS, key="reversals_table", labels=LABELS)
    pager(page.total, key="reversals_page", at_least=page.total_is_lower_bound)
else:
    st.info("No reversals yet.")
