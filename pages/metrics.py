"""Connection metrics: how well freelancers get connected, for a date range (last 90 days by
default). Four charts (Vega-Lite specs), each with its table and CSV below it.

The CSVs here are aggregates already on screen (no freelancer appears in them), so anyone who
may open the page may download them; account-level exports need ``Action.EXPORT``.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from dashboard import cache
from dashboard.context import get_context
from dashboard.widgets import channel, chart, require_page, show_lib_error, table_with_csv
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
chart(pd.DataFrame(rates), {"type": "line", "point": True}, key="metrics_rates_chart",
      x=channel("bucket", "temporal", bucket_title),
      y=channel("success_rate", "quantitative", "Success rate (%)", scale={"domain": [0, 100]}),
      color=channel("method", "nominal", "Method"),
      tooltip=["bucket", "method", "attempts", "succeeded", "failed", "abandoned", "pending",
               "success_rate"])
table_with_csv(rates, ["bucket", "method", "attempts", "succeeded", "failed", "abandoned",
                       "pending", "success_rate"],
               key="metrics_rates", file_name=f"success-rate-by-{grain.value}.csv")
st.caption("Success rate = succeeded ÷ (succeeded + failed + abandoned); pending attempts have "
           "no outcome yet.")

# ---- funnel ----------------------------------------------------------------------------------
st.subheader("Funnel")
stages = [asdict(s) for s in data["funnel"]]
order = [s["stage"] for s in stages]
chart(pd.DataFrame(stages), "bar", key="metrics_funnel_chart",
      y=channel("stage", "nominal", None, sort=order),
      x=channel("freelancers", "quantitative", "Freelancers"),
      tooltip=["stage", "freelancers", "share_of_issued"])
table_with_csv(stages, ["stage", "freelancers", "share_of_issued"], key="metrics_funnel",
               file_name="connection-funnel.csv")
st.caption("Distinct freelancers with a link issued in the range; each stage is part of the "
           "one before. Verified: charges and payouts enabled, nothing due now.")

# ---- failure reasons -------------------------------------------------------------------------
st.subheader("Failure reasons")
reasons = [{**asdict(p), "bucket": p.bucket.isoformat()} for p in data["reasons"]]
if reasons:
    chart(pd.DataFrame(reasons), "bar", key="metrics_reasons_chart",
          x=channel("bucket", "temporal", bucket_title),
          y=channel("attempts", "quantitative", "Attempts", stack="zero"),
          color=channel("reason", "nominal", "Reason"),
          tooltip=["bucket", "reason", "attempts"])
    table_with_csv(reasons, ["bucket", "reason", "attempts"], key="metrics_reasons",
                   file_name=f"failure-reasons-by-{grain.value}.csv")
else:
    st.success("No failed or abandoned attempts in this range.")

# ---- time to connect -------------------------------------------------------------------------
st.subheader("Time to connect")
durations = [asdict(b) for b in data["durations"]]
chart(pd.DataFrame(durations), "bar", key="metrics_durations_chart",
      x=channel("bucket", "nominal", "From link to connected",
                sort=[d["bucket"] for d in durations]),
      y=channel("attempts", "quantitative", "Succeeded attempts"),
      tooltip=["bucket", "attempts"])
table_with_csv(durations, ["bucket", "attempts"], key="metrics_durations",
               file_name="time-to-connect.csv")
