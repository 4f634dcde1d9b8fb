"""The warning every admin page shows when no background worker is alive.

Without a worker, Stripe's webhooks are stored but never processed and the scheduled jobs do
not run, which nothing else on a page would reveal. The check is one indexed MAX() over the
heartbeats, cached for a few seconds (it is the same for every admin: nothing per-user).
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dashboard.context import AppContext
from lib.roles import Action, Operator
from lib.worker_status import WorkerHealth, stale_after, worker_health


@st.cache_data(ttl=10, show_spinner=False, max_entries=16)
def _health(_factory: sessionmaker[Session], operator: Operator,
            stale: timedelta) -> WorkerHealth:
    with _factory() as session:
        return worker_health(session, operator=operator, stale=stale)


def warn_if_worker_stopped(context: AppContext, operator: Operator) -> None:
    """For an admin: a warning at the top of the page when no worker has a fresh heartbeat."""
    if not operator.can(Action.VIEW_WEBHOOKS):
        return
    try:
        health = _health(context.session_factory, operator, stale_after(context.settings))
    except SQLAlchemyError:
        return  # the page itself reports an unreachable database
    if not health.alive:
        st.warning(health.message, icon=":material/warning:")
