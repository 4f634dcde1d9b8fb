"""Webhooks and sync: the background worker, what Stripe has told us lately, what failed,
replays, and a full sync.

The worker (``python -m lib.worker``) processes the stored events and runs the scheduled
jobs: its heartbeat, the queue and each job's last and next run come first
(``dashboard.worker_panel``). Failed events are retried by the worker with backoff; dead
letters (all attempts used) wait for a person's replay. Replaying and syncing are admin actions checked again in ``lib`` (``REPLAY_WEBHOOK``,
``SYNC_ACCOUNTS``). The sync reports progress through its callback after each page of accounts;
Stripe does not say how many accounts there are, so the bar fills as pages arrive and is full
when the last page is in.
"""

from __future__ import annotations

import streamlit as st

from dashboard.context import get_context
from dashboard.page_helpers import (
    PAGE_SIZE,
    csv_download,
    last_page_offset,
    page_offset,
    pager,
    require_page,
    show_error,
    show_flash,
)
from dashboard.tables import show_table
from dashboard.worker_panel import background_worker
from lib.errors import ConnectOpsError
from lib.models import WebhookStatus
from lib.roles import Action
from lib.sync import sync_all_accounts
from lib.webhook_queries import failed_events, last_events_per_type
from lib.webhooks import RetryPolicy, replay_event

operator = require_page(Action.VIEW_WEBHOOKS)
context = get_context()
state = st.session_state
TYPE_COLUMNS = ["type", "received", "failed", "last_received_at", "last_status",
                "last_event_id", "last_account"]
FAILED_COLUMNS = ["stripe_event_id", "type", "state", "attempts", "next_attempt_at", "error",
                  "received_at", "account", "endpoint"]
SYNC_PAGE = 100

st.title("Webhooks and sync")
show_flash("webhooks_flash")


def events_by_type() -> None:
    st.subheader("Last events received, per type")
    with context.session_factory() as session:
        types = last_events_per_type(session, operator=operator)
    if not types:
        st.info("No webhook events received yet.")
        return
    rows = [t.to_dict() for t in types]
    show_table(rows, TYPE_COLUMNS, key="webhooks_types_table")
    csv_download("Download (CSV)", rows, TYPE_COLUMNS, file_name="webhook-event-types.csv",
                 key="webhooks_types_download")


def failures() -> None:
    st.subheader("Failed events")
    st.caption("Retrying: the worker tries again at the time shown, with a growing wait. "
               "Dead letter: every attempt failed; replay it once the cause is fixed.")
    # The page number is read before the query and its input drawn once the total is known: one
    # count and one page of the failures per run instead of two of each.
    offset = page_offset("webhooks_failed_page", filters=None)
    with context.session_factory() as session:
        page = failed_events(session, operator=operator, limit=PAGE_SIZE, offset=offset)
        if offset and not page.rows and page.total:
            # Failures were replayed away since the page number was chosen: the last page.
            offset = last_page_offset(page.total)
            page = failed_events(session, operator=operator, limit=PAGE_SIZE, offset=offset)
    if page.total > PAGE_SIZE:
        pager(page.total, key="webhooks_failed_page")
    elif page.total:
        st.caption(f"{page.total} row{'s' if page.total != 1 else ''}")
    if not page.rows:
        st.success("No failed events.")
        return
    rows = [r.to_dict() for r in page.rows]
    show_table(rows, FAILED_COLUMNS, key="webhooks_failed_table")
    csv_download("Download failures (CSV)", rows, FAILED_COLUMNS,
                 file_name="webhook-failures.csv", key="webhooks_failed_download")
    if not operator.can(Action.REPLAY_WEBHOOK):
        return
    ids = [r.stripe_event_id for r in page.rows]
    chosen = st.selectbox("Event to replay", ids, key="webhooks_replay_id")
    if st.button("Replay event", key="webhooks_replay") and chosen:
        try:
            outcome = replay_event(context.session_factory, gateway=context.gateway,
                                   operator=operator, event_id=chosen,
                                   policy=RetryPolicy.from_settings(context.settings))
        except ConnectOpsError as exc:
            show_error(exc)
            return
        if outcome is None:
            state["webhooks_flash"] = ("ok", f"Event {chosen} is being processed by a worker.")
        elif outcome.status in (WebhookStatus.FAILED, WebhookStatus.DEAD):
            state["webhooks_flash"] = ("error", f"Event {chosen} failed again: {outcome.note}")
        else:
            state["webhooks_flash"] = ("ok", f"Event {chosen} replayed: "
                                       f"{outcome.status.value}.")
        st.rerun()


def sync() -> None:
    st.subheader("Sync all accounts from Stripe")
    st.caption("Re-reads every connected account from Stripe into the local mirror. Safe while "
               "webhooks arrive: older data never overwrites newer.")
    if not operator.can(Action.SYNC_ACCOUNTS):
        return
    if not st.button("Sync all accounts from Stripe", key="webhooks_sync"):
        return
    bar = st.progress(0.0, text="Starting…")

    def progress(done: int, more: bool) -> None:
        fraction = 1.0 if not more else done / (done + SYNC_PAGE)
        bar.progress(fraction, text=f"{done} account(s) synced" + ("…" if more else "."))

    try:
        report = sync_all_accounts(context.session_factory, gateway=context.gateway,
                                   operator=operator, progress=progress, page_size=SYNC_PAGE)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    bar.progress(1.0, text="Done.")
    st.success(f"Synced {report.synced} account(s) in {report.pages} page(s) and "
               f"{report.seconds:.1f} s; {report.skipped_stale} skipped (newer data already "
               f"here); rate limited {report.rate_limited} time(s).")


try:
    background_worker(context, operator)
    events_by_type()
    failures()
except ConnectOpsError as exc:
    show_error(exc)
sync()
