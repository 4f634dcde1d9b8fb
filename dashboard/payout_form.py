"""The Payouts page's "New payout" tab: find a freelancer, check, confirm, see the outcome.

The steps and their session keys live in ``dashboard.payout_form_state`` (pure Python, unit
tested, with why a double click cannot pay twice); this module draws each step and calls lib:
``preflight`` and the duplicate guard to check, ``request_payout`` (idempotent by the form's
token) then ``execute_payout`` to send.
"""

from __future__ import annotations

import streamlit as st

from dashboard import payout_form_state as form
from dashboard import tables
from dashboard.context import AppContext
from dashboard.page_helpers import mark, plain, show_error
from lib.errors import ConnectOpsError, NotFoundError
from lib.freelancers import get_freelancer, search_freelancers
from lib.models import Payout, PayoutStatus
from lib.money import SUPPORTED_CURRENCIES, format_money
from lib.payouts import execute_payout, preflight, request_payout
from lib.payouts.duplicates import LikelyDuplicateError, find_payout_duplicate
from lib.payouts.ledger import needs_approval, parse_money
from lib.payouts.limits import limits_for
from lib.roles import Operator

CURRENCIES = sorted(SUPPORTED_CURRENCIES)


def new_payout(context: AppContext, operator: Operator) -> None:
    """The tab: whichever step the session is on."""
    state = st.session_state
    step = form.current_step(state)
    if step == "done":
        _show_outcome(form.outcome(state))
    elif step == "confirm":
        _confirm(context, operator, form.draft(state))
    else:
        _form(context)


def freelancer_options(context: AppContext, search: str) -> dict[int, str]:
    """Picker labels (plain text in a selectbox); the names are kept in ``payouts_names``.

    The freelancer sent here from the Accounts page (``payouts_freelancer_id``) is always
    offered, whatever the search.
    """
    state = st.session_state
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


# ---- step 1: the form -------------------------------------------------------------------------


def _form(context: AppContext) -> None:
    state = st.session_state
    search = st.text_input("Find a freelancer", key="payouts_freelancer_search",
                           placeholder="name, email or acct_…")
    options = freelancer_options(context, search)
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
        _check(context, int(freelancer_id), state["payouts_names"][freelancer_id], amount,
               currency, description)


def _check(context: AppContext, freelancer_id: int, name: str, amount: str, currency: str,
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
    form.checked(st.session_state, {
        "freelancer_id": freelancer_id, "freelancer": name, "amount": amount.strip(),
        "currency": money.currency, "description": description.strip(),
        "shown": format_money(money), "ok": result.ok,
        "approval": needs_approval(context.settings, money), "checks": result.to_rows(),
        "limits": limits_for(context.settings, money.currency).describe(),
        "duplicate_of": _earlier(earlier),
    })
    st.rerun()


def _earlier(payout: Payout | None) -> form.Earlier | None:
    """What the form says about the payout this one repeats (None when it repeats nothing)."""
    if payout is None:
        return None
    return {"id": payout.id, "status": payout.status, "by": payout.requested_by,
            "when": f"{payout.created_at:%Y-%m-%d %H:%M} UTC", "description": payout.description}


# ---- step 2: confirm and send -----------------------------------------------------------------


def _confirm(context: AppContext, operator: Operator, draft: form.Draft) -> None:
    state = st.session_state
    st.subheader(f"Pay {plain(draft['shown'])} to {plain(draft['freelancer'])}")
    if draft["description"]:
        st.caption(f"Description: {plain(draft['description'])}")
    # The checks' names are words for the reader ("Destination confirmed"), not identifiers.
    tables.show_table(
        [{"passed": mark(c["ok"]), "check": tables.label(c["check"]), "result": c["message"]}
         for c in draft["checks"]], ["passed", "check", "result"], key="payouts_checks_table")
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
                    key=form.REPEAT_OK)
    in_flight = form.in_flight(state)
    left, right = st.columns([1, 4])
    left.button("Back", key="payouts_back", on_click=form.back_to_form, args=(state,),
                disabled=in_flight)
    label = "Confirm request" if draft["approval"] else "Confirm and send payout"
    right.button(label, key="payouts_submit", type="primary", on_click=form.start_send,
                 args=(state,),
                 disabled=in_flight or not draft["ok"] or form.blocked_by_repeat(state, draft))
    if form.send_requested(state):
        with st.spinner("Sending the payout…"):
            _send(context, operator, draft)


def _send(context: AppContext, operator: Operator, draft: form.Draft) -> None:
    """Request (idempotent by token) then execute; the row, once it exists, ends the form."""
    state = st.session_state
    factory = context.session_factory
    try:
        with factory.begin() as session:
            payout = request_payout(
                session, operator=operator, freelancer_id=draft["freelancer_id"],
                amount=draft["amount"], currency=draft["currency"],
                description=draft["description"], client_request_token=form.request_token(state),
                settings=context.settings, audit_refusals_with=factory,
                confirm_duplicate_of=form.confirmed_repeat_of(state, draft),
            )
            payout_id, status = payout.id, payout.status
    except LikelyDuplicateError as exc:
        with factory() as session:
            earlier = _earlier(session.get(Payout, exc.earlier_id))
        form.repeat_found(state, draft, earlier)
        st.rerun()
    except ConnectOpsError as exc:
        form.send_refused(state)
        show_error(exc)
        return
    error = None
    if status in (PayoutStatus.PENDING, PayoutStatus.UNKNOWN, PayoutStatus.SUBMITTED):
        try:
            payout = execute_payout(factory, gateway=context.gateway, payout_id=payout_id,
                                    operator=operator)
        except ConnectOpsError as exc:
            error = exc.message
    form.sent(state, {
        "id": payout.id, "status": payout.status, "transfer": payout.stripe_transfer_id,
        "error": error or payout.error_message, "shown": draft["shown"],
        "freelancer": draft["freelancer"],
    })
    st.rerun()


# ---- step 3: the outcome ----------------------------------------------------------------------


def _show_outcome(result: form.Outcome) -> None:
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
    st.button("Request another payout", key="payouts_new", on_click=form.fresh_form,
              args=(st.session_state,))
