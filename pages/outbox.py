"""Outbox: every outgoing message (outreach emails, alerts, digests) and how its delivery went.

The worker delivers them (``lib.outbox``); this page shows each one's status, attempts, next
try and last error, its text, and lets an admin send a failed or dead one again
(``RETRY_MESSAGE``, checked again in ``lib``). Newest first, paged.
"""

from __future__ import annotations

import streamlit as st

from dashboard.context import get_context
from dashboard.page_helpers import (
    PAGE_SIZE,
    page_offset,
    pager,
    require_page,
    show_error,
    show_flash,
)
from dashboard.tables import when
from dashboard.worker_health import warn_if_worker_stopped
from lib.errors import ConnectOpsError
from lib.models import MessageKind, MessageStatus
from lib.outbox import list_messages, message_detail, retry_message
from lib.roles import Action

operator = require_page(Action.VIEW_OUTBOX)
context = get_context()
state = st.session_state

st.title("Outbox")
st.caption("Every email and chat message the desk sends, written when it was decided and "
           "delivered by the background worker with retries. Failed: it is tried again at the "
           "time shown. Dead: every attempt failed, or the server refused it for good; retry "
           "it once the cause is fixed.")
warn_if_worker_stopped(context, operator)
show_flash("outbox_flash")

settings = context.settings
email_ready = bool(settings.smtp_host and settings.smtp_sender)
chat_ready = settings.alert_chat_webhook_url is not None
st.caption(f"Email: {'via ' + str(settings.smtp_host) if email_ready else 'not configured'} · "
           f"Chat webhook: {'configured' if chat_ready else 'not configured'} · "
           f"At most {settings.outbox_rate_per_minute} messages per minute per worker.")

left, right = st.columns(2)
statuses = left.multiselect("Status", [s.value for s in MessageStatus], key="outbox_status")
kinds = right.multiselect("Kind", [k.value for k in MessageKind], key="outbox_kind")
offset = page_offset("outbox_page", filters=(tuple(statuses), tuple(kinds)))
try:
    with context.session_factory() as session:
        page = list_messages(session, operator=operator, statuses=tuple(statuses),
                             kinds=tuple(kinds), limit=PAGE_SIZE, offset=offset)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

tiles = st.columns(len(MessageStatus))
for column, each in zip(tiles, MessageStatus, strict=True):
    column.metric(each.value.title(), page.counts.get(each.value, 0))

if not page.rows:
    st.info("No message matches." if statuses or kinds else "Nothing has been sent yet.",
            icon=":material/outbox:")
    st.stop()

st.dataframe([{
    "Id": r.id, "Created": when(r.created_at), "Kind": r.kind, "Channel": r.channel,
    "To": r.recipient, "Subject": r.subject, "Status": r.status, "Attempts": r.attempts,
    "Next try": when(r.next_attempt_at), "Sent": when(r.sent_at),
    "Last error": r.last_error or "", "By": r.created_by,
} for r in page.rows], hide_index=True, width="stretch", key="outbox_table")
pager(page.total, key="outbox_page")

st.subheader("One message")
labels = {r.id: f"#{r.id} · {r.status} · {r.recipient} · {r.subject}" for r in page.rows}
chosen = st.selectbox("Message", list(labels), format_func=labels.__getitem__, index=None,
                      placeholder="Choose a message from this page", key="outbox_message")
if chosen is None:
    st.stop()
try:
    with context.session_factory() as session:
        message = message_detail(session, operator=operator, message_id=int(chosen))
        body, error, status = message.body_text, message.last_error, message.status
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()
if error:
    st.error(f"Last error: {error}", icon=":material/error:")
with st.expander("The text as stored (an outreach email's link is made when it is sent)"):
    st.text(body)
if status in (MessageStatus.FAILED.value, MessageStatus.DEAD.value) and operator.can(
        Action.RETRY_MESSAGE):
    if st.button("Retry now", key="outbox_retry", icon=":material/replay:"):
        try:
            with context.session_factory.begin() as session:
                retry_message(session, operator=operator, message_id=int(chosen))
        except ConnectOpsError as exc:
            show_error(exc)
            st.stop()
        state["outbox_flash"] = ("ok", f"Message #{chosen} is queued again with a fresh set of "
                                 "attempts; the worker sends it shortly.")
        st.rerun()
