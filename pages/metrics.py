"""Connection metrics: how well freelancers get connected, for a date range (last 90 days by
default). Four charts (altair), each with its table and CSV below it.

The CSVs here are aggregates already on screen (no freelancer appears in them), so anyone who
may open the page may download them; account-level exports need ``Action.EXPORT``.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import cache
from dashboard.context import get_context
from dashboard.widgets import require_page, show_lib_error, table_with_csv
from lib.connection_metrics import DateRange, Grain
from lib.errors import ConnectOpsError
from lib.roles import Action

operator = require_page(Action.VIEW_METRICS)
context = get_context()

METHOD_NAMES = {"oauth": "OAuth (Standard)", "account_link": "Onboarding link (Express)"}

st.title("Connection metrics")
today = datetime.now(UTC).date()
left, right = st.columns([3, 1])
chosen = left.date_input("Attempts started between (UTC)",
                         value=(today - timedelta(days=89), today), max_value=today,
                         key="metrics_date_range")
grain_name = right.radio("Group by", ["day", "week"], horizontal=True, key="metrics_grain")
if not isinstance(chosen, tuple | list) or len(chosen) != 2:
    st.info("Choose the last day of the range.", icon=":material/date_range:")
    st.stop()

try:
    period = DateRange(chosen[0], chosen[1])
    grain = Grain(grain_name)
    data = cache.metrics(context.session_factory, operator, period, grain)
except ConnectOpsError as exc:
    show_lib_error(exc)
    st.stop()

if not data["rates"]:
    st.info("No connection attempts started in this range. Links generated on the Onboarding "
            "links page show up here.", icon=":material/info:")
    st.stop()

bucket_title = "Week of" if grain is Grain.WEEK else "Day"

# ---- success rate over time ------------------------------------------------------------------
st.subheader("Success rate")
rates = [{**asdict(p), "bucket": p.bucket.isoformat(), "method": METHOD_NAMES.get(p.method, p.method),
          "decided": p.decided, "success_rate": p.success_rate} for p in data["rates"]]
chart = alt.Chart(pd.DataFrame(rates)).mark_line(point=True).encode(
    x=alt.X("bucket:T", title=bucket_title),
    y=alt.Y("success_rate:Q", title="Success rate (%)", scale=alt.Scale(domain=[0, 100])),
    color=alt.Color("method:N", title="Method"),
    tooltip=["bucket", "method", "attempts", "succeeded", "failed", "abandoned", "pending",
             "success_rate"],
)
st.altair_chart(chart, width="stretch")
table_with_csv(rates, ["bucket", "method", "attempts", "succeeded", "failed", "abandoned",
                       "pending", "success_rate"],
               key="metrics_rates", file_name=f"success-rate-by-{grain.value}.csv")
st.caption("Success rate = succeeded ÷ (succeeded + failed + abandoned); pending attempts have "
           "no outcome yet.")

# ---- funnel ----------------------------------------------------------------------------------
st.subheader("Funnel")
stages = [asdict(s) for s in data["funnel"]]
order = [s["stage"] for s in stages]
chart = alt.Chart(pd.DataFrame(stages)).mark_bar().encode(
    y=alt.Y("stage:N", sort=order, title=None),
    x=alt.X("freelancers:Q", title="Freelancers"),
    tooltip=["stage", "freelancers", "share_of_issued"],
)
st.altair_chart(chart, width="stretch")
table_with_csv(stages, ["stage", "freelancers", "share_of_issued"], key="metrics_funnel",
               file_name="connection-funnel.csv")
st.caption("Distinct freelancers with a link issued in the range; each stage is part of the "
           "one before. Verified: charges and payouts enabled, nothing due now.")

# ---- failure reasons -------------------------------------------------------------------------
st.subheader("Failure reasons")
reasons = [{**asdict(p), "bucket": p.bucket.isoformat()} for p in data["reasons"]]
if reasons:
    chart = alt.Chart(pd.DataFrame(reasons)).mark_bar().encode(
        x=alt.X("bucket:T", title=bucket_title),
        y=alt.Y("attempts:Q", title="Attempts", stack="zero"),
        color=alt.Color("reason:N", title="Reason"),
        tooltip=["bucket", "reason", "attempts"],
    )
    st.altair_chart(chart, width="stretch")
    table_with_csv(reasons, ["bucket", "reason", "attempts"], key="metrics_reasons",
                   file_name=f"failure-reasons-by-{grain.value}.csv")
else:
    st.success("No failed or abandoned attempts in this range.")

# ---- time to connect -------------------------------------------------------------------------
st.subheader("Time to connect")
durations = [asdict(b) for b in data["durations"]]
chart = alt.Chart(pd.DataFrame(durations)).mark_bar().encode(
    x=alt.X("bucket:N", sort=[d["bucket"] for d in durations], title="From link to connected"),
    y=alt.Y("attempts:Q", title="Succeeded attempts"),
    tooltip=["bucket", "attempts"],
)
st.altair_chart(chart, width="stretch")
table_with_csv(durations, ["bucket", "attempts"], key="metrics_durations",
               file_name="time-to-connect.csv")
