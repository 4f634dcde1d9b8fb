"""Payouts: request one (preflight → confirm → sent exactly once), pay a CSV in bulk, the ledger.

Why a double click cannot pay twice
    A ``client_request_token`` (uuid4) is made when the form is first shown and kept in the
    session until the payout exists. Every send passes it to ``request_payout``, whose UNIQUE
    column returns the existing row for a repeated token, and ``execute_payout`` claims the row
    with a conditional update before Stripe is called. The button is disabled while a send is
    in flight (a flag set by its ``on_click``, before the rerun), but that only spares people a
    confusing second click: the token and the claim are what guarantee one row, one transfer.
"""

from __future__ import annotations

import uuid
from typing import Any

import streamlit as st

from dashboard.context import get_context
from dashboard.page_helpers import (
    PAGE_SIZE,
    csv_download,
    date_range,
    mark,
    page_offset,
    pager,
    plain,
    prepared_csv,
    require_page,
    show_error,
)
from dashboard.tables import money, show_table
from lib.errors import ConnectOpsError, NotFoundError
from lib.exports import rows_to_csv
from lib.freelancers import get_freelancer, search_freelancers
from lib.funding import clear_bulk_preview, note_bulk_preview
from lib.labels import payout_status
from lib.models import Payout, PayoutStatus
from lib.money import SUPPORTED_CURRENCIES, format_money
from lib.payouts import (
    BulkPreview,
    PayoutFilter,
    confirm_bulk,
    execute_payout,
    export_rows,
    list_payouts,
    preflight,
    preview_bulk,
    request_payout,
    totals_by_currency,
)
from lib.payouts.duplicates import LikelyDuplicateError, find_payout_duplicate
from lib.payouts.ledger import needs_approval, parse_money
from lib.payouts.limits import limits_for
from lib.roles import Action

operator = require_page(Action.VIEW_PAYOUTS)
context = get_context()
state = st.session_state
CURRENCIES = sorted(SUPPORTED_CURRENCIES)
LEDGER_COLUMNS = ["id", "created_at", "freelancer_name", "amount", "currency", "status",
                  "payout_type", "description", "requested_by", "approved_by",
                  "stripe_transfer_id", "error_message"]
EXPORT_COLUMNS = ["id", "created_at", "freelancer_id", "freelancer_name", "freelancer_email",
                  "amount_minor", "amount", "currency", "status", "payout_type", "description",
                  "requested_by", "approved_by", "stripe_transfer_id", "error_code",
                  "error_message", "reversed_minor", "net_minor", "net", "completed_at"]

st.title("Payouts")


# ---- one payout -------------------------------------------------------------------------------


def _fresh_form() -> None:
    """A new token for a new payout; the old one stays with the row it made."""
    state["payouts_token"] = str(uuid.uuid4())
    state["payouts_stage"] = "form"
    state["payouts_in_flight"] = False
    state["payouts_send"] = False
    for name in ("payouts_draft", "payouts_result", "payouts_amount", "payouts_description",
                 "payouts_repeat_ok"):
        state.pop(name, None)


def _start_send() -> None:
    state["payouts_in_flight"] = True
    state["payouts_send"] = True


def _back_to_form() -> None:
    state["payouts_stage"] = "form"
    state["payouts_send"] = False


def _freelancer_options(search: str) -> dict[int, str]:
    """Picker labels (plain text in a selectbox); the names are kept in ``payouts_names``."""
    preselected = state.get("payouts_freelancer_id")
    with context.session_factory() as session:
        found = search_freelancers(session, text=search, limit=50)
        if preselected is not None and all(f.id != preselected for f in found):
            try:
                found.insert(0, get_freelancer(session, freelancer_id=int(preselected)))
            except (NotFoundError, ValueError, TypeError):
                pass
        state.setdefault("payouts_names", {}).update({f.id: f.name for f in found})
        return {f.id: f"{f.name} · {f.email} · {f.stripe_account_id or 'not connected'}"
                for f in found}


def _check(freelancer_id: int, name: str, amount: str, currency: str,
           description: str) -> None:
    """Parse and preflight; on success move to the confirm step."""
    try:
        money = parse_money(amount, currency, settings=context.settings)
        with context.session_factory() as session:
            result = preflight(session, gateway=context.gateway, freelancer_id=freelancer_id,
                               money=money)
            earlier = find_payout_duplicate(session, freelancer_id=freelancer_id, money=money,
                                            description=description, settings=context.settings)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    state["payouts_draft"] = {
        "freelancer_id": freelancer_id, "freelancer": name, "amount": amount.strip(),
        "currency": money.currency, "description": description.strip(),
        "shown": format_money(money), "ok": result.ok,
        "approval": needs_approval(context.settings, money), "checks": result.to_rows(),
        "limits": limits_for(context.settings, money.currency).describe(),
        "duplicate_of": _earlier(earlier),
    }
    state["payouts_stage"] = "confirm"
    st.rerun()


def _earlier(payout: Payout | None) -> dict[str, Any] | None:
    """What the form says about the payout this one repeats (None when it repeats nothing)."""
    if payout is None:
        return None
    return {"id": payout.id, "status": payout.status, "by": payout.requested_by,
            "when": f"{payout.created_at:%Y-%m-%d %H:%M} UTC", "description": payout.description}


def _send(draft: dict[str, Any]) -> None:
    """Request (idempotent by token) then execute; the row, once it exists, ends the form."""
    factory = context.session_factory
    try:
        with factory.begin() as session:
            payout = request_payout(
                session, operator=operator, freelancer_id=draft["freelancer_id"],
                amount=draft["amount"], currency=draft["currency"],
                description=draft["description"], client_request_token=state["payouts_token"],
                settings=context.settings, audit_refusals_with=factory,
                confirm_duplicate_of=(draft["duplicate_of"] or {}).get("id")
                if state.get("payouts_repeat_ok") else None,
            )
            payout_id, status = payout.id, payout.status
    except LikelyDuplicateError as exc:
        # Another payout like this one appeared since the check: show it and ask again.
        state["payouts_in_flight"] = state["payouts_send"] = False
        with factory() as session:
            draft["duplicate_of"] = _earlier(session.get(Payout, exc.earlier_id))
        state["payouts_repeat_ok"] = False
        st.rerun()
    except ConnectOpsError as exc:
        state["payouts_in_flight"] = state["payouts_send"] = False
        show_error(exc)
        return
    error = None
    if status in (PayoutStatus.PENDING, PayoutStatus.UNKNOWN, PayoutStatus.SUBMITTED):
        try:
            payout = execute_payout(factory, gateway=context.gateway, payout_id=payout_id,
                                    operator=operator)
        except ConnectOpsError as exc:
            error = exc.message
    state["payouts_result"] = {
        "id": payout.id, "status": payout.status, "transfer": payout.stripe_transfer_id,
        "error": error or payout.error_message, "shown": draft["shown"],
        "freelancer": draft["freelancer"],
    }
    state["payouts_stage"] = "done"
    state["payouts_in_flight"] = state["payouts_send"] = False
    st.rerun()


def _show_result(result: dict[str, Any]) -> None:
    status, ident = result["status"], f"Payout #{result['id']}"
    if status == PayoutStatus.PAID:
        st.success(f"{ident}: {plain(result['shown'])} paid to {plain(result['freelancer'])}.",
                   icon=":material/check_circle:")
        st.write("Stripe transfer id:")
        st.code(result["transfer"], language=None)
    elif status == PayoutStatus.PENDING_APPROVAL:
        st.info(f"{ident} for {plain(result['shown'])} is at or above the approval threshold: it now "
                "waits on the Approvals page for a second operator. Nothing was sent yet.",
                icon=":material/approval:")
    elif status == PayoutStatus.UNKNOWN:
        st.warning(f"{ident}: Stripe did not answer clearly ({result['error']}). The transfer "
                   "may exist; retry it from the ledger below (same key, it cannot pay twice).")
    elif status == PayoutStatus.SUBMITTED:
        st.info(f"{ident} is being sent right now by another session.")
    else:
        st.error(f"{ident} is {status}: {result['error'] or 'not sent'}.")
    st.button("Request another payout", key="payouts_new", on_click=_fresh_form)


def single_payout() -> None:
    if "payouts_token" not in state:
        _fresh_form()
    stage = state.get("payouts_stage", "form")
    if stage == "done" and state.get("payouts_result"):
        state["payouts_send"] = False  # a stale second click must not start anything
        _show_result(state["payouts_result"])
        return
    if stage == "confirm" and state.get("payouts_draft"):
        confirm_step(state["payouts_draft"])
        return
    search = st.text_input("Find a freelancer", key="payouts_freelancer_search",
                           placeholder="name, email or acct_…")
    options = _freelancer_options(search)
    if not options:
        st.info("No freelancer matches. Add freelancers on the Onboarding links page.")
        return
    preselected = state.get("payouts_freelancer_id")
    ids = list(options)
    with st.form("payouts_form"):
        freelancer_id = st.selectbox(
            "Freelancer", ids, format_func=options.__getitem__, key="payouts_freelancer",
            index=ids.index(preselected) if preselected in ids else 0)
        left, right = st.columns([2, 1])
        amount = left.text_input("Amount", key="payouts_amount", placeholder="1,250.00")
        currency = right.selectbox("Currency", CURRENCIES, index=CURRENCIES.index("usd"),
                                   format_func=str.upper, key="payouts_currency")
        description = st.text_input("Description", key="payouts_description", max_chars=500,
                                    placeholder="Invoice 2024-117")
        checked = st.form_submit_button("Check payout", type="primary")
    if checked and freelancer_id is not None:
        _check(int(freelancer_id), state["payouts_names"][freelancer_id], amount, currency,
               description)


def confirm_step(draft: dict[str, Any]) -> None:
    st.subheader(f"Pay {plain(draft['shown'])} to {plain(draft['freelancer'])}")
    if draft["description"]:
        st.caption(f"Description: {plain(draft['description'])}")
    st.dataframe(
        [{"": mark(c["ok"]), "check": c["check"], "result": c["message"]}
         for c in draft["checks"]],
        hide_index=True, width="stretch",
    )
    st.caption(f"Limits in {draft['currency'].upper()}: {plain(draft['limits'])}")
    if not draft["ok"]:
        st.error("The checks above must pass before this payout can be sent.")
    elif draft["approval"]:
        st.warning("This amount is at or above the approval threshold: confirming records the "
                   "request and a second operator approves it on the Approvals page.")
    repeat = draft.get("duplicate_of")
    if repeat:
        st.warning(
            f"Payout #{repeat['id']} already pays {plain(draft['freelancer'])} "
            f"{plain(draft['shown'])} for “{plain(repeat['description'] or 'no description')}” "
            f"({repeat['status']}, requested {repeat['when']} by {plain(repeat['by'])}). "
            "Is this a second payment?", icon=":material/content_copy:")
        st.checkbox(f"Yes: pay again, this is not a repeat of #{repeat['id']}",
                    key="payouts_repeat_ok")
    blocked = bool(repeat) and not state.get("payouts_repeat_ok")
    in_flight = bool(state.get("payouts_in_flight"))
    left, right = st.columns([1, 4])
    left.button("Back", key="payouts_back", on_click=_back_to_form, disabled=in_flight)
    label = "Confirm request" if draft["approval"] else "Confirm and send payout"
    right.button(label, key="payouts_submit", type="primary", on_click=_start_send,
                 disabled=in_flight or not draft["ok"] or blocked)
    if state.get("payouts_send"):
        with st.spinner("Sending the payout…"):
            _send(draft)


# ---- bulk -------------------------------------------------------------------------------------


def _start_bulk() -> None:
    state["payouts_bulk_in_flight"] = True


def _note_preview(preview: BulkPreview | None) -> None:
    """Tell the Funding page what this file is about to pay (issue 21); once per file."""
    noted = state.get("payouts_bulk_noted")
    fingerprint = preview.fingerprint if preview is not None else None
    if noted == fingerprint:
        return
    with context.session_factory.begin() as session:
        if preview is None:
            clear_bulk_preview(session, operator=operator)
        else:
            note_bulk_preview(session, operator=operator, fingerprint=preview.fingerprint,
                              totals=[(t.currency, t.rows, t.amount_minor)
                                      for t in preview.totals])
    state["payouts_bulk_noted"] = fingerprint


def bulk_upload() -> None:
    st.caption("A CSV with a header naming freelancer_email (or freelancer_id), amount, currency "
               "and optionally description and reference (an invoice number). Nothing is paid "
               "until you confirm the preview. Rows are recognised by their content, so "
               "confirming the same sheet again (even re-saved) only finishes what is unfinished; "
               "a reference tells apart rows that are otherwise the same.")
    uploaded = st.file_uploader("Payouts CSV", type=["csv"], key="payouts_bulk_file")
    if uploaded is None:
        _note_preview(None)
        return
    data = uploaded.getvalue()
    try:
        with context.session_factory() as session:
            preview = preview_bulk(session, gateway=context.gateway, operator=operator,
                                   csv_bytes=data, settings=context.settings)
        _note_preview(preview)
    except ConnectOpsError as exc:
        show_error(exc)
        return
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
    good, bad = len(preview.good_rows), len(preview.bad_rows)
    st.caption(f"{good} row(s) ready, {bad} with problems (skipped).")
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
    acknowledged = not matches or bool(state.get("payouts_bulk_ack"))
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
        show_table(result[1], ["row", "payout_id", "status", "detail"],
                   key="payouts_bulk_results", labels={"row": "Line"})
        csv_download("Download results CSV", result[1], ["row", "payout_id", "status", "detail"],
                     file_name="bulk-payout-results.csv", key="payouts_bulk_download")


# ---- the ledger -------------------------------------------------------------------------------


def _retry_unknown() -> None:
    """Unknown outcomes are re-sent with their own key: Stripe replays, never pays twice."""
    with context.session_factory() as session:
        page = list_payouts(session, operator=operator,
                            filters=PayoutFilter(status=PayoutStatus.UNKNOWN.value), limit=100)
    if not page.rows:
        return
    st.warning(f"{page.total} payout(s) have an unknown outcome.")
    labels = {r.id: f"#{r.id} · {r.freelancer_name} · {r.amount} {r.currency.upper()}"
              for r in page.rows}
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


def ledger() -> None:
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
        matches = _freelancer_options(search)
        if not matches:
            st.info("No freelancer matches that search.")
            return
        freelancer_id = st.selectbox("Matching freelancer", list(matches),
                                     format_func=matches.__getitem__,
                                     key="payouts_ledger_freelancer_id")
    filters = PayoutFilter(status=None if status == "any" else status,
                           currency=None if currency == "any" else currency,
                           freelancer_id=freelancer_id, created_from=start, created_to=end)
    # The page number is read before the query and its input drawn once the total is known, so
    # the filtered ledger is counted once per run (not once for the pager and again for the page).
    offset = page_offset("payouts_ledger_page", filters=filters)
    try:
        with context.session_factory() as session:
            page = list_payouts(session, operator=operator, filters=filters, limit=PAGE_SIZE,
                                offset=offset)
            if offset and not page.rows and page.total:
                # Fewer payouts match than when the page number was chosen: the last page.
                offset = (page.total - 1) // PAGE_SIZE * PAGE_SIZE
                page = list_payouts(session, operator=operator, filters=filters,
                                    limit=PAGE_SIZE, offset=offset)
            totals = totals_by_currency(session, operator=operator, filters=filters)
    except ConnectOpsError as exc:
        show_error(exc)
        return
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
    if totals:
        st.caption("Totals per currency and status (never added across currencies)")
        show_table([{"currency": t.currency.upper(), "status": payout_status(t.status),
                     "count": t.count, "amount": money(t.amount_minor, t.currency),
                     "reversed": money(t.reversed_minor, t.currency),
                     "net": money(t.net_minor, t.currency)}
                    for t in totals], ["currency", "status", "count", "amount", "reversed", "net"],
                   key="payouts_totals_table", note_zone=False)
    if operator.can(Action.EXPORT):
        def build() -> bytes:
            with context.session_factory() as session:
                export = export_rows(session, operator=operator, filters=filters)
            if export.notice():
                st.warning(export.notice())
            return rows_to_csv(export.rows, EXPORT_COLUMNS)

        prepared_csv("ledger CSV", build, fingerprint=repr(filters),
                     file_name="payouts-ledger.csv", key="payouts_ledger_export")
    if operator.can(Action.REQUEST_PAYOUT):
        _retry_unknown()


if operator.can(Action.REQUEST_PAYOUT):
    new_tab, bulk_tab, ledger_tab = st.tabs(["New payout", "Bulk upload", "Ledger"])
    with new_tab:
        single_payout()
    with bulk_tab:
        bulk_upload()
    with ledger_tab:
        ledger()
else:
    st.caption("You can read the ledger; requesting payouts is for admins.")
    ledger()
