"""Outreach on the Requirements due and Accounts pages: who was contacted, and the confirmed
"email what Stripe needs" action with its preview and progress bar.

The pages call two functions: :func:`contact_columns` adds "Last contacted", "Times
contacted" and "Since the last email" to their tables, and :func:`outreach_panel` draws the
action. Everything is checked again in ``lib.outreach`` (``SEND_OUTREACH``); the preview's
batch token stays in the session until the send finishes, so a rerun of the page mid-send
(a second click, a reconnect) resumes the same batch instead of starting another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
import streamlit as st

from dashboard import cache
from dashboard.context import AppContext
from dashboard.page_helpers import show_error
from dashboard.tables import when
from lib.errors import ConnectOpsError
from lib.outreach import (
    ContactSummary,
    OutreachPreview,
    contact_history,
    contact_summaries,
    preview_outreach,
    send_outreach,
)
from lib.roles import Action, Operator

COLUMNS = ("Last contacted", "Times contacted", "Since the last email")


def contact_columns(context: AppContext, operator: Operator,
                    freelancer_ids: list[int]) -> dict[int, dict[str, object]]:
    """The outreach columns for the freelancers shown (one query for the page)."""
    try:
        with context.session_factory() as session:
            found: dict[int, ContactSummary] = contact_summaries(
                session, operator=operator, freelancer_ids=freelancer_ids)
    except ConnectOpsError as exc:
        show_error(exc)
        return {}
    return {fid: {COLUMNS[0]: when(s.last_contacted_at), COLUMNS[1]: s.times_contacted,
                  COLUMNS[2]: s.outcome} for fid, s in found.items()}


def with_contact_columns(frame: pd.DataFrame, ids: list[int],
                         columns: Mapping[int, Mapping[str, object]], *,
                         after: str = "Status") -> pd.DataFrame:
    """``frame`` (one row per id, in order) with the outreach columns after ``after``."""
    position = list(frame.columns).index(after) + 1 if after in frame.columns else len(frame.columns)
    for offset, name in enumerate(COLUMNS):
        empty: object = 0 if name == COLUMNS[1] else ""
        frame.insert(position + offset, name,
                     [columns.get(fid, {}).get(name, empty) for fid in ids])
    return frame


def outreach_panel(
    context: AppContext, operator: Operator, *, key: str, choices: Mapping[int, str],
    all_matching: Callable[[], list[int]] | None = None, all_label: str = "",
    fixed: list[int] | None = None,
) -> None:
    """Pick freelancers (or email the ``fixed`` ones), preview, confirm, watch the progress."""
    if not operator.can(Action.SEND_OUTREACH):
        return
    state = st.session_state
    flash = state.pop(f"{key}_flash", None)
    if flash:
        st.success(flash, icon=":material/outgoing_mail:")
    preview: OutreachPreview | None = state.get(f"{key}_preview")
    if preview is None:
        use_all = bool(all_matching) and st.checkbox(all_label, key=f"{key}_all")
        chosen: list[int] = list(fixed or [])
        if not use_all and fixed is None:
            chosen = st.multiselect("Freelancers to email", list(choices),
                                    format_func=lambda fid: choices.get(fid, str(fid)),
                                    key=f"{key}_who",
                                    placeholder="Choose from the table above")
        if st.button("Preview emails", key=f"{key}_preview_button",
                     icon=":material/preview:", disabled=not (use_all or chosen)):
            try:
                ids = all_matching() if use_all and all_matching else chosen
                with context.session_factory() as session:
                    state[f"{key}_preview"] = preview_outreach(session, operator=operator,
                                                               freelancer_ids=ids)
            except ConnectOpsError as exc:
                show_error(exc)
                return
            st.rerun()
        return
    _show_preview(preview)
    count = len(preview.recipients)
    confirm, cancel = st.columns([2, 1])
    send = confirm.button(f"Confirm and send {count} email{'s' if count != 1 else ''}",
                          key=f"{key}_confirm", type="primary", disabled=count == 0,
                          icon=":material/send:")
    if cancel.button("Cancel", key=f"{key}_cancel"):
        state.pop(f"{key}_preview", None)
        st.rerun()
    if not send:
        return
    bar = st.progress(0.0, text="Recording the emails…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"{done} of {total} recorded and queued")

    try:
        result = send_outreach(context.session_factory, operator=operator, token=preview.token,
                               freelancer_ids=preview.freelancer_ids, progress=progress)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    state.pop(f"{key}_preview", None)
    rate = context.settings.outbox_rate_per_minute
    parts = [f"{result.queued} email(s) queued"]
    if result.already:
        parts.append(f"{result.already} already recorded by an earlier run of this batch")
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped (their requirements changed meanwhile)")
    state[f"{key}_flash"] = ("; ".join(parts) + f". The worker sends them, at most {rate} per "
                             "minute; the Outbox page shows each one's delivery.")
    cache.clear_account_reads()
    st.rerun()


def account_outreach(context: AppContext, operator: Operator, *, freelancer_id: int,
                     label: str, due: bool) -> None:
    """The Accounts page's detail: the emails sent to this freelancer, and a new one."""
    try:
        with context.session_factory() as session:
            history = contact_history(session, operator=operator, freelancer_id=freelancer_id)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    st.markdown("**Requirement emails**")
    if history:
        st.dataframe(pd.DataFrame([{
            "Sent": when(h.created_at), "By": h.created_by, "To": h.email,
            "About": "; ".join(h.requirements), "Deadline": when(h.deadline) or "none",
            "Delivery": h.message_status or "", "Link opened": when(h.link_opened_at),
            "Link expires": when(h.link_expires_at),
        } for h in history]), hide_index=True, width="stretch",
            key="accounts_outreach_history")
    else:
        st.caption("No requirement email sent yet.")
    if due:  # an email is about something currently or past due
        outreach_panel(context, operator, key=f"accounts_outreach_{freelancer_id}",
                       choices={freelancer_id: label}, fixed=[freelancer_id])


def _show_preview(preview: OutreachPreview) -> None:
    count = len(preview.recipients)
    st.info(f"{count} freelancer(s) will get an email with a single-use link to their payment "
            "settings, what Stripe asks for, and the deadline. Nothing is sent until you "
            "confirm.", icon=":material/preview:")
    if preview.recipients:
        st.dataframe(pd.DataFrame([{
            "Freelancer": c.name, "Email": c.email,
            "Stripe asks for": "; ".join(a.label + (" (overdue)" if a.past_due else "")
                                         for a in c.asks),
            "Deadline": when(c.deadline) or "none",
        } for c in preview.recipients]), hide_index=True, width="stretch")
    if preview.skipped:
        st.caption(f"{len(preview.skipped)} not emailed:")
        st.dataframe(pd.DataFrame([{"Freelancer": c.name, "Why not": c.skip_reason}
                                   for c in preview.skipped]), hide_index=True, width="stretch")
    if preview.sample is not None:
        subject, text = preview.sample
        with st.expander(f"The email, as the first freelancer reads it: “{subject}”"):
            st.text(text)

