"""Payouts: request one (check → confirm → sent exactly once), pay a CSV in bulk, the ledger.

Admins get the three tabs; other roles that may view payouts read the ledger. Each tab is a
module of its own: ``dashboard.payout_form`` (its steps in ``dashboard.payout_form_state``,
with why a double click cannot pay twice), ``dashboard.payout_bulk`` and
``dashboard.payout_ledger``.
"""

from __future__ import annotations

import streamlit as st

from dashboard.context import get_context
from dashboard.page_helpers import require_page
from dashboard.payout_bulk import bulk_upload
from dashboard.payout_form import new_payout
from dashboard.payout_ledger import ledger
from lib.roles import Action

operator = require_page(Action.VIEW_PAYOUTS)
context = get_context()

st.title("Payouts")

if operator.can(Action.REQUEST_PAYOUT):
    new_tab, bulk_tab, ledger_tab = st.tabs(["New payout", "Bulk upload", "Ledger"])
    with new_tab:
        new_payout(context, operator)
    with bulk_tab:
        bulk_upload(context, operator)
    with ledger_tab:
        ledger(context, operator)
else:
    st.caption("You can read the ledger; requesting payouts is for admins.")
    ledger(context, operator)
