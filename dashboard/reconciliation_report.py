"""The Reconciliation page's reports: the worker's latest daily run, and a run made on the page.

A report is a list of ``ReconciliationItem`` rows (``lib.payouts.reconciliation``); it is shown
in three groups (mismatches for a person, unknowns settled, still open) and exported whole
through ``lib.exports``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import streamlit as st

from dashboard.context import AppContext
from dashboard.page_helpers import csv_download
from dashboard.tables import money, show_table
from lib.labels import payout_status, spelled
from lib.payouts import ReconciliationItem
from lib.payouts.reconciliation import MISMATCH_KINDS, RESOLVED_PAID, RESOLVED_REVERSAL
from lib.reconciliation_runs import latest_reports
from lib.roles import Operator

COLUMNS = [f.name for f in fields(ReconciliationItem)]
#: What a person reads: amounts with their currency instead of minor units and codes.
SHOWN = ["kind", "detail", "payout_id", "ledger_status", "ledger_amount", "stripe_amount",
         "stripe_transfer_id", "ledger_destination", "stripe_destination"]
RESOLVED = (RESOLVED_PAID, RESOLVED_REVERSAL)


def scheduled_run(context: AppContext, operator: Operator) -> None:
    """The worker's latest stored daily run."""
    with context.session_factory() as session:
        latest = latest_reports(session, operator=operator, limit=1)
    st.subheader("Daily run (background worker)")
    if not latest:
        st.caption("The worker's daily run has not stored a report yet.")
        return
    run = latest[0]
    period = f"{run.period_start:%Y-%m-%d %H:%M} to {run.period_end:%Y-%m-%d %H:%M} UTC"
    st.caption(f"Run at {run.started_at:%Y-%m-%d %H:%M} UTC over {period}, by "
               f"{run.triggered_by}.")
    if run.status != "ok":
        st.error(f"The last daily run failed: {run.error}")
        return
    (st.error if run.mismatches else st.success)(
        f"{run.summary.get('transfers_seen', 0)} transfer(s) checked, {run.mismatches} "
        f"mismatch(es), {run.resolved} unknown payout(s) settled.")
    needs_a_person = [r for r in run.items if r["kind"] in MISMATCH_KINDS]
    if needs_a_person:
        st.dataframe(needs_a_person, hide_index=True, width="stretch", column_order=COLUMNS)
    csv_download("Download the daily report (CSV)", run.items, COLUMNS,
                 file_name=f"reconciliation-daily-{run.started_at:%Y-%m-%d}.csv",
                 key="reconciliation_daily_download")


def show_report(period: str, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """A run's summary tiles, its rows by group, and the whole report as a CSV."""
    mismatches = [r for r in rows if r["kind"] in MISMATCH_KINDS]
    resolved = [r for r in rows if r["kind"] in RESOLVED]
    other = [r for r in rows if r["kind"] not in MISMATCH_KINDS and r["kind"] not in RESOLVED]
    st.subheader(f"Period {period}")
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("Stripe transfers", summary.get("transfers_seen", 0))
    c2.metric("Ledger rows checked", summary.get("ledger_rows_checked", 0))
    c3.metric("Matched", summary.get("matched", 0))
    c4.metric("Mismatches", len(mismatches))
    c5.metric("Unknowns resolved", len(resolved))
    if mismatches:
        st.error(f"{len(mismatches)} mismatch(es) need a person.")
    else:
        st.success("No mismatches: the ledger and Stripe agree for this period.")
    for title, chosen in (("Mismatches", mismatches),
                          ("Unknown payouts and reversals resolved", resolved),
                          ("Still open (retry with the same key, or in flight)", other)):
        if chosen:
            st.markdown(f"**{title}**")
            show_table([_readable(row) for row in chosen], SHOWN,
                       key=f"reconciliation_{title[:8]}",
                       labels={"payout_id": "Payout #", "kind": "Finding"})
    csv_download("Download the report (CSV)", rows, COLUMNS, file_name="reconciliation.csv",
                 key="reconciliation_download")


def _readable(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "kind": spelled(row.get("kind")),
            "ledger_status": payout_status(row.get("ledger_status")) if row.get("ledger_status")
            else "",
            "ledger_amount": money(row.get("ledger_amount_minor"), row.get("ledger_currency")),
            "stripe_amount": money(row.get("stripe_amount_minor"), row.get("stripe_currency"))}
