"""Reconciliation: Stripe's transfers for a period against the ledger; unknowns settled.

The run itself is ``lib.payouts.reconciliation.reconcile``: it settles what it can prove (an
``unknown`` row whose transfer exists with the same amount, currency and destination) and
reports every disagreement. The page commits those settlements with their audit entries in one
transaction, keeps the report in the session (so downloading it does not run it again) and
exports it through ``lib.exports``. The worker's daily run (``lib.reconciliation_runs``) is
stored; its latest report is shown first. Rows only a person can settle come before both
(``dashboard.reconciliation_decisions``).
"""

from __future__ import annotations

import streamlit as st

from dashboard.context import get_context
from dashboard.page_helpers import date_range, require_page, show_error, show_flash
from dashboard.reconciliation_decisions import FLASH, decisions, drift
from dashboard.reconciliation_report import scheduled_run, show_report
from lib.errors import ConnectOpsError
from lib.payouts import reconcile
from lib.roles import Action

operator = require_page(Action.RECONCILE)
context = get_context()
state = st.session_state

st.title("Reconciliation")
st.caption("Compares Stripe's transfers created in the period with the payouts ledger. Payouts "
           "with an unknown outcome are looked up whatever their date and settled when Stripe "
           "has their transfer; everything else that disagrees is listed for a person.")
show_flash(FLASH)
decisions(context, operator)
drift(context, operator)
try:
    scheduled_run(context, operator)
except ConnectOpsError as exc:
    show_error(exc)

st.subheader("Run now")
since, until = date_range("Period", key="reconciliation_dates", days=7)
if st.button("Run reconciliation", key="reconciliation_run", type="primary",
             disabled=since is None or until is None) and since and until:
    try:
        with st.spinner("Reading Stripe's transfers…"):
            report = reconcile(context.session_factory, gateway=context.gateway,
                               operator=operator, since=since, until=until)
            state["reconciliation_report"] = {
                "period": f"{since:%Y-%m-%d} to {until:%Y-%m-%d} (exclusive)",
                "summary": report.summary(), "rows": report.rows(),
            }
    except ConnectOpsError as exc:
        show_error(exc)

shown = state.get("reconciliation_report")
if not shown:
    st.info("Choose a period and run the reconciliation.")
    st.stop()
show_report(shown["period"], shown["summary"], shown["rows"])
