"""Reconciliation: Stripe's transfers for a period against the ledger; unknowns settled.

The run itself is ``lib.payouts.reconciliation.reconcile``: it settles what it can prove (an
``unknown`` row whose transfer exists with the same amount, currency and destination) and
reports every disagreement. The page commits those settlements with their audit entries in one
transaction, keeps the report in the session (so downloading it does not run it again) and
exports it through ``lib.exports``. The worker's daily run (``lib.reconciliation_runs``) is
stored; its latest report is shown first.
"""

from __future__ import annotations

from dataclasses import fields

import streamlit as st

from dashboard.context import get_context
from dashboard.page_helpers import (
    csv_download,
    date_range,
    plain,
    require_page,
    show_error,
    show_flash,
)
from dashboard.tables import money, show_table
from lib.errors import ConnectOpsError
from lib.labels import payout_status, spelled
from lib.money import Money, format_money
from lib.payouts import ReconciliationItem, reconcile
from lib.payouts.decisions import (
    awaiting_decision,
    confirm_decision,
    open_decisions,
    propose_decision,
    withdraw_decision,
)
from lib.payouts.queries import recent_drift
from lib.payouts.reconciliation import MISMATCH_KINDS, RESOLVED_PAID, RESOLVED_REVERSAL
from lib.reconciliation_runs import latest_reports
from lib.roles import Action

operator = require_page(Action.RECONCILE)
context = get_context()
state = st.session_state
COLUMNS = [f.name for f in fields(ReconciliationItem)]

st.title("Reconciliation")
st.caption("Compares Stripe's transfers created in the period with the payouts ledger. Payouts "
           "with an unknown outcome are looked up whatever their date and settled when Stripe "
           "has their transfer; everything else that disagrees is listed for a person.")

show_flash("reconciliation_flash")


def decisions() -> None:
    """Rows no retry may settle: one person proposes how they ended, a second confirms."""
    with context.session_factory() as session:
        awaiting = awaiting_decision(session, operator=operator)
        proposals = open_decisions(session, operator=operator)
    if not awaiting and not proposals:
        return
    st.subheader("Needs a person's decision")
    st.caption("Sent long ago with no known outcome (Stripe may have forgotten the idempotency "
               "key), or answered with a saved error no retry can change. Look the payout up in "
               "Stripe's dashboard, then record what happened; a second person confirms.")
    if awaiting:
        show_table([{"what": f"{a.subject.capitalize()} #{a.subject_id}", "payout": a.payout_id,
                     "status": spelled(a.status), "amount": money(a.amount_minor, a.currency),
                     "destination": a.destination, "first_sent_at": a.first_sent, "why": a.why}
                    for a in awaiting],
                   ["what", "payout", "status", "amount", "destination", "first_sent_at", "why"],
                   key="reconciliation_awaiting", labels={"first_sent_at": "First sent"})
        labels = {(a.subject, a.subject_id): f"{a.subject} #{a.subject_id} · "
                  f"{format_money(Money(a.amount_minor, a.currency))}" for a in awaiting}
        with st.form("reconciliation_propose"):
            chosen = st.selectbox("Row", list(labels), format_func=labels.__getitem__,
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
                    state["reconciliation_flash"] = ("ok", "Proposed: a second person confirms it "
                                                           "below.")
                    st.rerun()
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
                state["reconciliation_flash"] = ("ok", f"Decision #{decision.id} confirmed; the "
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


def drift() -> None:
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


decisions()
drift()



def scheduled_run() -> None:
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


try:
    scheduled_run()
except ConnectOpsError as exc:
    show_error(exc)
st.subheader("Run now")
since, until = date_range("Period", key="reconciliation_dates", days=7)
if st.button("Run reconciliation", key="reconciliation_run", type="primary",
             disabled=since is None or until is None):
    assert since is not None and until is not None
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

report_state = state.get("reconciliation_report")
if not report_state:
    st.info("Choose a period and run the reconciliation.")
    st.stop()

rows = report_state["rows"]
summary = report_state["summary"]
mismatches = [r for r in rows if r["kind"] in MISMATCH_KINDS]
resolved = [r for r in rows if r["kind"] in (RESOLVED_PAID, RESOLVED_REVERSAL)]
other = [r for r in rows if r["kind"] not in MISMATCH_KINDS
         and r["kind"] not in (RESOLVED_PAID, RESOLVED_REVERSAL)]

#: What a person reads: amounts with their currency instead of minor units and codes.
SHOWN = ["kind", "detail", "payout_id", "ledger_status", "ledger_amount", "stripe_amount",
         "stripe_transfer_id", "ledger_destination", "stripe_destination"]


def _readable(row: dict) -> dict:
    return {**row, "kind": spelled(row.get("kind")),
            "ledger_status": payout_status(row.get("ledger_status")) if row.get("ledger_status")
            else "",
            "ledger_amount": money(row.get("ledger_amount_minor"), row.get("ledger_currency")),
            "stripe_amount": money(row.get("stripe_amount_minor"), row.get("stripe_currency"))}


st.subheader(f"Period {report_state['period']}")
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
        show_table([_readable(row) for row in chosen], SHOWN, key=f"reconciliation_{title[:8]}",
                   labels={"payout_id": "Payout #", "kind": "Finding"})
csv_download("Download the report (CSV)", rows, COLUMNS, file_name="reconciliation.csv",
             key="reconciliation_download")
