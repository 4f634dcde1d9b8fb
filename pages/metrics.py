"""Connection metrics: are freelancers getting connected, how fast, and where do they drop out?

For a date range (last 90 days by default), grouped by week when days are sparse (fewer than
:data:`lib.connection_timing.SMALL_SAMPLE` decided attempts a day on average) so a rate is not a
coin flip, by day otherwise; the reader can switch. Attempts are bars and the success rate a line
over the same buckets; rates and medians resting on small samples are drawn hollow. The sections
(tiles, charts, their tables and CSVs) are ``dashboard.metrics_sections``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from dashboard import cache, metrics_sections
from dashboard.context import get_context
from dashboard.page_helpers import require_page, show_error
from dashboard.tables import TIME_ZONE
from lib.connection_metrics import DateRange, Grain
from lib.connection_timing import SMALL_SAMPLE
from lib.errors import ConnectOpsError
from lib.roles import Action

operator = require_page(Action.VIEW_METRICS)
context = get_context()
state = st.session_state

st.title("Connection metrics")
st.caption("Are freelancers getting connected, how fast, and where do they drop out? Attempts "
           f"belong to the day or week (Monday) they started, {TIME_ZONE}.")
today = datetime.now(UTC).date()
left, right = st.columns([3, 1])
chosen = left.date_input(f"Attempts started between ({TIME_ZONE})",
                         value=(today - timedelta(days=89), today), max_value=today,
                         key="metrics_date_range")
if not isinstance(chosen, tuple | list) or len(chosen) != 2:
    st.info("Choose the last day of the range.", icon=":material/date_range:")
    st.stop()

try:
    period = DateRange(chosen[0], chosen[1])
    if "metrics_grain" not in state:
        # The first visit picks the grain from the volume: a count, not a whole weekly series.
        days = (period.last - period.first).days + 1
        decided = cache.decided_attempts(context.session_factory, operator, period)
        state["metrics_grain"] = "Week" if decided / days < SMALL_SAMPLE else "Day"
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

grain_name = right.radio("Group by", ["Week", "Day"], horizontal=True, key="metrics_grain",
                         help="Week is the default when days have fewer than "
                              f"{SMALL_SAMPLE} decided attempts on average.")
grain = Grain.WEEK if grain_name == "Week" else Grain.DAY
try:
    data = cache.metrics(context.session_factory, operator, period, grain)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

if not data.rates:
    st.info("No connection attempts started in this range. Links generated on the Onboarding "
            "links page show up here.", icon=":material/info:")
    st.stop()

bucket_title = "Week of" if grain is Grain.WEEK else "Day"
metrics_sections.at_a_glance(data)
metrics_sections.attempts_and_rate(data, grain, bucket_title)
metrics_sections.funnel(data)
metrics_sections.failure_reasons(data, grain, bucket_title)
metrics_sections.time_to_connect(data)
