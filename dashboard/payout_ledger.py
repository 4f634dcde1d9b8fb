"""The Payouts page's ledger: filters, one page of payouts, totals per currency, the export,
and the retry of payouts whose outcome is unknown.

The page number is read before the query and its input drawn once the total is known, so the
filtered ledger is counted once per run (not once for the pager and again for the page).
"""

from __future__ import annotations

import streamlit as st

from dashboard.context import AppContext
from dashboard.page_helpers import (
    PAGE_SIZE,
    date_range,
    last_page_offset,
    page_offset,
    pager,
    prepared_csv,
    show_error,
)
from dashboard.payout_form import CURRENCIES, freelancer_options
from dashboard.tables import money, show_table
from lib.errors import ConnectOpsError
from lib.exports import rows_to_csv
from lib.labels import payout_status
from lib.models import PayoutStatus
from lib.payouts import (
    PayoutFilter,
    execute_payout,
    export_rows,
    list_payouts,
    totals_by_currency,
)
from lib.payouts.queries import PayoutPage, retry_choices
from lib.roles import Action, Operator

LEDGER_COLUMNS = ["id", "created_at", "freelancer_name", "amount", "currency", "status",
                  "payout_type", "description", "requested_by", "approved_by",
                  "stripe_transfer_id", "error_message"]
EXPORT_COLUMNS = ["id", "created_at", "freelancer_id", "freelancer_name", "freelancer_email",
                  "amount_minor", "amount", "currency", "status", "payout_type", "description",
                  "requested_by", "approved_by", "stripe_transfer_id", "error_code",
                  "error_message", "reversed_minor", "net_minor", "net", "completed_at"]


def ledger(context: AppContext, operator: Operator) -> None:
    """Filters, the page of payouts, totals, the export and (for admins) the retry."""
    filters = _filters(context)
    if filters is None:
        return
    offset = page_offset("payouts_ledger_page", filters=filters)
    try:
        with context.session_factory() as session:
            page = list_payouts(session, operator=operator, filters=filters, limit=PAGE_SIZE,
                                offset=offset)
            if offset and not page.rows and page.total:
                # Fewer payouts match than when the page number was chosen: the last page.
                page = list_payouts(session, operator=operator, filters=filters,
                                    limit=PAGE_SIZE, offset=last_page_offset(page.total))
            totals = totals_by_currency(session, operator=operator, filters=filters)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    _page_of_payouts(page)
    if totals:
        st.caption("Totals per currency and status (never added across currencies)")
        show_table([{"currency": t.currency.upper(), "status": payout_status(t.status),
                     "count": t.count, "amount": money(t.amount_minor, t.currency),
                     "reversed": money(t.reversed_minor, t.currency),
                     "net": money(t.net_minor, t.currency)}
                    for t in totals], ["currency", "status", "count", "amount", "reversed", "net"],
                   key="payouts_totals_table", note_zone=False)
    if operator.can(Action.EXPORT):
        _export(context, operator, filters)
    if operator.can(Action.REQUEST_PAYOUT):
        _retry_unknown(context, operator)


def _filters(context: AppContext) -> PayoutFilter | None:
    """The ledger's filters; None when the freelancer search matches nobody (said so)."""
    c1, c2, c3 = st.columns(3)
    status = c1.selectbox("Status", ["any", *[s.value for s in PayoutStatus]],
                          key="payouts_ledger_status",
                          format_func=lambda s: "Any" if s == "any" else payout_status(s))
    currency = c2.selectbox("Currency", ["any", *CURRENCIES], key="payouts_ledger_currency",
                            format_func=lambda c: "Any" if c == "any" else c.upper())
    with c3:
        start, end = date_range("Created between", key="payouts_ledger_dates", days=30)
    search = st.text_input("Freelancer (name, email or account id)",
                           key="payouts_ledger_freelancer")
    freelancer_id = None
    if search.strip():
        matches = freelancer_options(context, search)
        if not matches:
            st.info("No freelancer matches that search.")
            return None
        freelancer_id = st.selectbox("Matching freelancer", list(matches),
                                     format_func=matches.__getitem__,
                                     key="payouts_ledger_freelancer_id")
    return PayoutFilter(status=None if status == "any" else status,
                        currency=None if currency == "any" else currency,
                        freelancer_id=freelancer_id, created_from=start, created_to=end)


def _page_of_payouts(page: PayoutPage) -> None:
    total = page.total
    if total > PAGE_SIZE:
        pager(total, key="payouts_ledger_page")
    if not page.rows:
        st.info("No payouts match these filters.")
    show_table([{**{c: getattr(r, c) for c in LEDGER_COLUMNS},
                 "amount": money(r.amount_minor, r.currency),
                 "status": payout_status(r.status), "payout_type": r.payout_type.title()}
                for r in page.rows], [c for c in LEDGER_COLUMNS if c != "currency"],
               key="payouts_ledger_table", labels={"id": "#", "stripe_transfer_id": "Transfer"})
    if total <= PAGE_SIZE:
        st.caption(f"{total} payout{'s' if total != 1 else ''}")


def _export(context: AppContext, operator: Operator, filters: PayoutFilter) -> None:
    def build() -> bytes:
        with context.session_factory() as session:
            export = export_rows(session, operator=operator, filters=filters)
        if export.notice():
            st.warning(export.notice())
        return rows_to_csv(export.rows, EXPORT_COLUMNS)

    prepared_csv("ledger CSV", build, fingerprint=repr(filters),
                 file_name="payouts-ledger.csv", key="payouts_ledger_export")


#: Unknown payouts offered for a retry at a time, newest first.
RETRY_CHOICES = 25


def _retry_unknown(context: AppContext, operator: Operator) -> None:
    """Unknown outcomes are re-sent with their own key: Stripe replays, never pays twice."""
    with context.session_factory() as session:
        found = retry_choices(session, operator=operator, limit=RETRY_CHOICES)
    if not found.unknown:
        return
    st.warning(f"{found.unknown:,} payout(s) have an unknown outcome.")
    if found.unknown > found.retryable:
        which = ("All of them" if not found.retryable
                 else f"{found.unknown - found.retryable:,} of them")
        st.caption(f"{which} were first sent over 23 hours ago or got a saved error from "
                   "Stripe: no retry can settle them, so they are on the Reconciliation page "
                   "for a person's decision.")
    if not found.rows:
        return
    if found.retryable > len(found.rows):
        # A retry settles a row and the next one comes up; the ledger's status filter lists all.
        st.caption(f"The {len(found.rows)} newest that a retry may settle are offered below; "
                   "filter the ledger by “Unknown” to see every one.")
    labels = {r.id: f"#{r.id} · {r.freelancer_name} · {r.amount} {r.currency.upper()}"
              for r in found.rows}
    chosen = st.selectbox("Unknown payout", list(labels), format_func=labels.__getitem__,
                          key="payouts_retry_id")
    if st.button("Retry with the same key", key="payouts_retry") and chosen is not None:
        try:
            payout = execute_payout(context.session_factory, gateway=context.gateway,
                                    payout_id=int(chosen), operator=operator)
        except ConnectOpsError as exc:
            show_error(exc)
        else:
            st.info(f"Payout #{payout.id} is now {payout.status}"
                    + (f" (transfer {payout.stripe_transfer_id})."
                       if payout.stripe_transfer_id else "."))
