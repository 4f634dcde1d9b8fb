"""The Reversals page's actions: ask for a reversal, approve or reject one, send one.

Every rule lives in ``lib.payouts.reversal`` (the reserved amount, the request token, the
likely-duplicate guard, the two-person threshold); these sections draw the forms and leave a
flash message (``reversals_flash``) for the page's next run.
"""

from __future__ import annotations

import uuid

import streamlit as st

from dashboard.context import AppContext
from dashboard.page_helpers import FlashKind, plain, show_error
from lib.errors import ConnectOpsError
from lib.models import ReversalStatus
from lib.money import Money, format_money
from lib.payouts.duplicates import LikelyDuplicateError
from lib.payouts.ledger import get_payout
from lib.payouts.limits import limits_for
from lib.payouts.queries import ReversalRow, list_reversals
from lib.payouts.reversal import (
    approve_reversal,
    execute_reversal,
    reject_reversal,
    reverse_payout,
)
from lib.roles import Action, Operator

FLASH = "reversals_flash"


def request_form(context: AppContext, operator: Operator) -> None:
    """Choose a paid payout, then reverse all or part of what remains of it, with a reason."""
    state = st.session_state
    st.subheader("Reverse a payout")
    payout_id = st.number_input("Payout number", min_value=1, step=1, value=None,
                                key="reversals_payout_id", placeholder="e.g. 1042")
    if payout_id is None:
        return
    try:
        with context.session_factory() as session:
            payout = get_payout(session, payout_id=int(payout_id))
    except ConnectOpsError as exc:
        show_error(exc)
        return
    remaining = payout.amount_minor - payout.amount_reversed_minor
    paid = format_money(Money(payout.amount_minor, payout.currency))
    left = format_money(Money(remaining, payout.currency))
    st.write(f"Payout #{payout.id}: {paid}, {payout.status}; "
             f"{left} can still be reversed.")
    if payout.status != "paid" or remaining <= 0:
        st.info("Only a paid payout with something left to reverse can be reversed.")
        return
    st.caption(limits_for(context.settings, payout.currency).describe())
    token = state.setdefault("reversals_token", str(uuid.uuid4()))
    with st.form("reversals_form"):
        amount = st.text_input(f"Amount in {payout.currency.upper()} (empty: all of {left})",
                               key="reversals_amount")
        reason = st.text_input("Reason (required)", key="reversals_reason", max_chars=500)
        repeat = state.get("reversals_repeat_of")
        again = st.checkbox(f"Reverse again: this is not a repeat of reversal #{repeat}",
                            key="reversals_again") if repeat else False
        submitted = st.form_submit_button("Reverse", type="primary")
    if not submitted:
        return
    try:
        reversal = reverse_payout(
            context.session_factory, gateway=context.gateway, operator=operator,
            payout_id=payout.id, amount=amount or None, reason=reason,
            settings=context.settings, client_request_token=token,
            confirm_duplicate_of=repeat if again else None)
    except LikelyDuplicateError as exc:
        # Show the form again with the "reverse again" confirmation, and say why.
        state["reversals_repeat_of"] = exc.earlier_id
        state[FLASH] = ("error", exc.message)
        st.rerun()
    except ConnectOpsError as exc:
        show_error(exc)
        return
    for name in ("reversals_token", "reversals_repeat_of"):
        state.pop(name, None)
    _flash(reversal.id, reversal.status, reversal.error_message)
    st.rerun()


#: The statuses the action sections list: waiting for approval, approved or unanswered.
_ACTIONABLE = (ReversalStatus.PENDING_APPROVAL.value, ReversalStatus.PENDING.value,
               ReversalStatus.UNKNOWN.value)


def actionable(context: AppContext, operator: Operator) -> list[ReversalRow]:
    """The reversals the sections below act on, newest first, read once for both."""
    with context.session_factory() as session:
        return list_reversals(session, operator=operator, statuses=_ACTIONABLE)


def approvals(context: AppContext, operator: Operator, found: list[ReversalRow]) -> None:
    """Reversals at or above the threshold, for someone who did not ask for them."""
    waiting = [r for r in found if r.status == ReversalStatus.PENDING_APPROVAL.value]
    if not waiting:
        return
    st.subheader("Awaiting a second operator")
    labels = {r.id: f"#{r.id} · {r.amount} {r.currency.upper()} of payout #{r.payout_id} "
                    f"({r.freelancer_name}), asked by {r.requested_by}" for r in waiting}
    chosen = st.selectbox("Reversal", list(labels), format_func=labels.__getitem__,
                          key="reversals_pending")
    selected = next(r for r in waiting if r.id == chosen)
    st.caption(f"Reason given: {plain(selected.reason)}")
    left, right = st.columns(2)
    if left.button("Approve and send", key="reversals_approve", type="primary"):
        try:
            with context.session_factory.begin() as session:
                approve_reversal(session, operator=operator, reversal_id=selected.id)
            done = execute_reversal(context.session_factory, gateway=context.gateway,
                                    operator=operator, reversal_id=selected.id) \
                if operator.can(Action.REVERSE_PAYOUT) else None
        except ConnectOpsError as exc:
            show_error(exc)
        else:
            if done is None:
                st.session_state[FLASH] = ("ok", f"Reversal #{selected.id} approved; an admin "
                                                 "sends it.")
            else:
                _flash(done.id, done.status, done.error_message)
            st.rerun()
    why = right.text_input("Reason for rejecting", key="reversals_reject_reason")
    if right.button("Reject", key="reversals_reject"):
        try:
            with context.session_factory.begin() as session:
                reject_reversal(session, operator=operator, reversal_id=selected.id, reason=why)
        except ConnectOpsError as exc:
            show_error(exc)
        else:
            st.session_state[FLASH] = ("ok", f"Reversal #{selected.id} rejected; its amount "
                                             "can be reversed again.")
            st.rerun()


def to_send(context: AppContext, operator: Operator, found: list[ReversalRow]) -> None:
    """Approved or unanswered reversals, sent again with their own key."""
    ready = [r for status in (ReversalStatus.PENDING.value, ReversalStatus.UNKNOWN.value)
             for r in found if r.status == status]
    if not ready:
        return
    st.subheader("Approved or unanswered: send")
    labels = {r.id: f"#{r.id} · {r.amount} {r.currency.upper()} · {r.status}" for r in ready}
    chosen = st.selectbox("Reversal to send", list(labels), format_func=labels.__getitem__,
                          key="reversals_send_id")
    if st.button("Send with its own key", key="reversals_send") and chosen is not None:
        try:
            done = execute_reversal(context.session_factory, gateway=context.gateway,
                                    operator=operator, reversal_id=int(chosen))
        except ConnectOpsError as exc:
            show_error(exc)
        else:
            _flash(done.id, done.status, done.error_message)
            st.rerun()


def _flash(reversal_id: int, status: str, error: str | None) -> None:
    texts: dict[str, tuple[FlashKind, str]] = {
        ReversalStatus.SUCCEEDED: ("ok", f"Reversal #{reversal_id} made at Stripe."),
        ReversalStatus.PENDING_APPROVAL: ("warn", f"Reversal #{reversal_id} is recorded and "
                                                  "waits for a second operator below."),
        ReversalStatus.UNKNOWN: ("warn", f"Reversal #{reversal_id}: Stripe did not answer "
                                         f"clearly ({error}). Retry it below: same key, it "
                                         "cannot reverse twice."),
    }
    st.session_state[FLASH] = texts.get(status, ("error", f"Reversal #{reversal_id} is "
                                                           f"{status}: {error or 'not made'}."))
