"""The Webhooks page's panel on the background worker: heartbeat, queue, workers, jobs.

The worker (``python -m lib.worker``) processes the stored events and runs the scheduled jobs;
this panel is everything ``lib.worker_status`` says about it. (The one-line warning other
admin pages show when no worker is alive is ``dashboard.worker_health``.)
"""

from __future__ import annotations

import streamlit as st

from dashboard.context import AppContext
from dashboard.tables import show_table
from lib.jobs import default_jobs
from lib.roles import Operator
from lib.worker_status import job_statuses, queue_summary, stale_after, worker_health, workers

WORKER_COLUMNS = ["worker_id", "state", "last_seen_at", "started_at", "events_processed",
                  "events_failed", "stopped_at"]
JOB_COLUMNS = ["name", "every", "last_finished_at", "last_status", "last_result", "next_run_at",
               "running_on", "description"]
#: The headers words alone would not make (the rest are spelled out by dashboard.tables.label).
LABELS = {"worker_id": "Worker", "name": "Job", "running_on": "Running on",
          "description": "What it does"}


def background_worker(context: AppContext, operator: Operator) -> None:
    st.subheader("Background worker")
    stale = stale_after(context.settings)
    with context.session_factory() as session:
        health = worker_health(session, operator=operator, stale=stale)
        running = workers(session, operator=operator, stale=stale)
        queue = queue_summary(session, operator=operator)
        jobs = job_statuses(session, operator=operator, jobs=default_jobs(context.settings))
    if health.alive and health.last_seen_at is not None:
        st.success(f"Running: last heartbeat at {health.last_seen_at:%H:%M:%S} UTC.",
                   icon=":material/favorite:")
    else:
        st.error(health.message, icon=":material/heart_broken:")
    waiting, processing, retrying, dead = st.columns(4)
    waiting.metric("Waiting", queue.waiting)
    processing.metric("Being processed", queue.processing)
    retrying.metric("Retrying", queue.retrying)
    dead.metric("Dead letters", queue.dead)
    if queue.oldest_waiting_at is not None:
        st.caption(f"Oldest waiting event received at {queue.oldest_waiting_at:%Y-%m-%d %H:%M:%S} "
                   "UTC.")
    if running:
        show_table([w.to_dict() for w in running], WORKER_COLUMNS, key="webhooks_workers_table",
                   labels=LABELS, note_zone=False)
    st.markdown("**Scheduled jobs** (each runs once per interval, whichever worker is free)")
    show_table([j.to_dict() for j in jobs], JOB_COLUMNS, key="webhooks_jobs_table",
               labels=LABELS)
