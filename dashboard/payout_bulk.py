"""The Payouts page's "Bulk upload" tab: a CSV, its dry run, then paying the ready rows.

``lib.payouts.bulk`` does the work: the preview checks every row and the balance, and
confirming pays each row once however often the same sheet is confirmed (rows are recognised
by their content). The preview is also noted for the Funding page (issue 21).
"""

from __future__ import annotations

import streamlit as st

from dashboard.context import AppContext
from dashboard.page_helpers import csv_download, show_error
from dashboard.tables import show_table
from lib.errors import ConnectOpsError
from lib.funding import clear_bulk_preview, note_bulk_preview
from lib.payouts import BulkPreview, confirm_bulk, preview_bulk
from lib.roles import Operator

RESULT_COLUMNS = ["row", "payout_id", "status", "detail"]


def bulk_upload(context: AppContext, operator: Operator) -> None:
    """The tab: upload, dry run, confirm, results."""
    st.caption("A CSV with a header naming freelancer_email (or freelancer_id), amount, currency "
               "and optionally description and reference (an invoice number). Nothing is paid "
               "until you confirm the preview. Rows are recognised by their content, so "
               "confirming the same sheet again (even re-saved) only finishes what is unfinished; "
               "a reference tells apart rows that are otherwise the same.")
    uploaded = st.file_uploader("Payouts CSV", type=["csv"], key="payouts_bulk_file")
    if uploaded is None:
        _note_preview(context, operator, None)
        return
    data = uploaded.getvalue()
    try:
        with context.session_factory() as session:
            preview = preview_bulk(session, gateway=context.gateway, operator=operator,
                                   csv_bytes=data, settings=context.settings)
        _note_preview(context, operator, preview)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    acknowledged = _dry_run(preview)
    _confirm(context, operator, preview, data, acknowledged)


def _note_preview(context: AppContext, operator: Operator, preview: BulkPreview | None) -> None:
    """Tell the Funding page what this file is about to pay (issue 21); once per file."""
    state = st.session_state
    fingerprint = preview.fingerprint if preview is not None else None
    if state.get("payouts_bulk_noted") == fingerprint:
        return
    with context.session_factory.begin() as session:
        if preview is None:
            clear_bulk_preview(session, operator=operator)
        else:
            note_bulk_preview(session, operator=operator, fingerprint=preview.fingerprint,
                              totals=[(t.currency, t.rows, t.amount_minor)
                                      for t in preview.totals])
    state["payouts_bulk_noted"] = fingerprint


def _dry_run(preview: BulkPreview) -> bool:
    """The preview's rows and totals; True when nothing needs acknowledging (or it was)."""
    st.subheader("Dry run")
    show_table(preview.to_rows(), ["row", "freelancer", "name", "amount", "currency",
                                   "description", "reference", "ok", "problems",
                                   "already_in_ledger", "looks_like"], key="payouts_bulk_rows",
               labels={"row": "Line", "ok": "Ready", "already_in_ledger": "Already in ledger",
                       "looks_like": "Looks like"})
    show_table([t.to_row() for t in preview.totals],
               ["currency", "rows", "total", "available", "covered"], key="payouts_bulk_totals",
               labels={"available": "Available at Stripe", "covered": "Covered"})
    if preview.balance_error:
        st.warning(f"Could not read the platform balance: {preview.balance_error}")
    st.caption(f"{len(preview.good_rows)} row(s) ready, {len(preview.bad_rows)} with problems "
               "(skipped).")
    if preview.already_in_ledger:
        st.info(f"{len(preview.already_in_ledger)} row(s) were already paid (or sent) from this "
                "sheet or an earlier copy of it: they are finished, never paid again.")
    matches = preview.ledger_matches
    if matches:
        st.warning(f"{len(matches)} row(s) look like payouts already in the ledger (same "
                   "freelancer, amount, currency and description recently; see 'looks_like'). "
                   "Remove them from the file, or confirm they are new payments.")
        st.checkbox(f"I checked the {len(matches)} row(s): they are new payments",
                    key="payouts_bulk_ack")
    return not matches or bool(st.session_state.get("payouts_bulk_ack"))


def _start_bulk() -> None:
    st.session_state["payouts_bulk_in_flight"] = True


def _confirm(context: AppContext, operator: Operator, preview: BulkPreview, data: bytes,
             acknowledged: bool) -> None:
    """The confirm button (disabled while paying), then the file's results."""
    state = st.session_state
    good = len(preview.good_rows)
    if good and not preview.covered:
        st.error("The available balance does not cover the ready rows in every currency.")
    result = state.get("payouts_bulk_result")
    in_flight = bool(state.get("payouts_bulk_in_flight"))
    st.button(f"Confirm: pay {good} row(s)", key="payouts_bulk_confirm", type="primary",
              on_click=_start_bulk,
              disabled=in_flight or not good or not preview.covered or not acknowledged)
    if in_flight:
        state.pop("payouts_bulk_error", None)
        try:
            with st.spinner("Paying the file's rows…"):
                done = confirm_bulk(context.session_factory, gateway=context.gateway,
                                    operator=operator, csv_bytes=data, settings=context.settings,
                                    acknowledge_matches=acknowledged)
            state["payouts_bulk_result"] = (preview.fingerprint, done.to_rows())
        except ConnectOpsError as exc:
            state["payouts_bulk_error"] = exc.message
        finally:
            state["payouts_bulk_in_flight"] = False
        st.rerun()  # re-render the button enabled: confirming again only finishes what is left
    if state.get("payouts_bulk_error"):
        st.error(state["payouts_bulk_error"])
    if result and result[0] == preview.fingerprint:
        st.success("Bulk payout finished: one row per payout below.")
        show_table(result[1], RESULT_COLUMNS, key="payouts_bulk_results", labels={"row": "Line"})
        csv_download("Download results CSV", result[1], RESULT_COLUMNS,
                     file_name="bulk-payout-results.csv", key="payouts_bulk_download")
