"""Connection metrics: are freelancers getting connected, how fast, and where do they drop out?

For a date range (last 90 days by default), grouped by week when days are sparse (fewer than
:data:`lib.connection_timing.SMALL_SAMPLE` decided attempts a day on average) so a rate is not a
coin flip, by day otherwise; the reader can switch. Attempts are bars and the success rate a line
over the same buckets; rates and medians resting on small samples are drawn hollow. Each chart
has its table and CSV in an expander under it (aggregates only: no freelancer appears, so anyone
who may open the page may download them). Charts are Altair specs built once (dashboard.charts).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from dashboard import cache, charts
from dashboard.context import get_context
from dashboard.page_helpers import kpi_tile, require_page, show_error
from dashboard.tables import TIME_ZONE, humanise
from lib import labels
from lib.connection_metrics import DateRange, Grain
from lib.connection_timing import SMALL_SAMPLE
from lib.errors import ConnectOpsError
from lib.exports import frame_to_csv
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
    weekly = cache.metrics(context.session_factory, operator, period, Grain.WEEK)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

days = (period.last - period.first).days + 1
decided_total = sum(p.decided for p in weekly["rates"])
sparse = decided_total / days < SMALL_SAMPLE
if "metrics_grain" not in state:
    state["metrics_grain"] = "Week" if sparse else "Day"
grain_name = right.radio("Group by", ["Week", "Day"], horizontal=True, key="metrics_grain",
                         help="Week is the default when days have fewer than "
                              f"{SMALL_SAMPLE} decided attempts on average.")
grain = Grain.WEEK if grain_name == "Week" else Grain.DAY
try:
    data = weekly if grain is Grain.WEEK else cache.metrics(context.session_factory, operator,
                                                             period, grain)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

if not data["rates"]:
    st.info("No connection attempts started in this range. Links generated on the Onboarding "
            "links page show up here.", icon=":material/info:")
    st.stop()

bucket_title = "Week of" if grain is Grain.WEEK else "Day"
timing = data["timing"][0]


def details(frame: pd.DataFrame, *, key: str, file_name: str) -> None:
    """The chart's numbers: a table and its CSV (the same human columns)."""
    with st.expander("Table and CSV"):
        st.dataframe(frame, hide_index=True, width="stretch", key=f"{key}_table")
        st.download_button("Download CSV", data=frame_to_csv(frame), file_name=file_name,
                           mime="text/csv", key=f"{key}_csv", on_click="ignore",
                           icon=":material/download:")


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 3_600:.1f} h" if seconds >= 3_600 else f"{seconds / 60:.0f} min"


# ---- at a glance -----------------------------------------------------------------------------
attempts = sum(p.attempts for p in data["rates"])
succeeded = sum(p.succeeded for p in data["rates"])
tiles = st.columns(4)
with tiles[0]:
    kpi_tile("Attempts started", f"{attempts:,}", help="Links issued in the range.")
with tiles[1]:
    kpi_tile("Success rate", f"{round(100 * succeeded / decided_total, 1)}%"
             if decided_total else "–",
             help=f"{succeeded:,} of {decided_total:,} attempts with an outcome succeeded.")
with tiles[2]:
    kpi_tile("Median time to connect", duration_text(timing.median_seconds),
             help=f"From link to connection, over {timing.connections:,} connections "
                  "(read from 10 %-wide duration buckets: within about 5 % of the exact "
                  "median).")
with tiles[3]:
    funnel_rows = data["funnel"]
    paid = funnel_rows[-1].freelancers if funnel_rows else 0
    kpi_tile("Links that led to a payout", f"{paid:,}",
             help="Freelancers with a link in the range who are now verified and were paid.")

# ---- volume and success rate -----------------------------------------------------------------
st.subheader("Attempts and success rate")
per_bucket: dict[object, dict[str, int]] = {}
for point in data["rates"]:
    entry = per_bucket.setdefault(point.bucket, {"attempts": 0, "decided": 0, "succeeded": 0})
    entry["attempts"] += point.attempts
    entry["decided"] += point.decided
    entry["succeeded"] += point.succeeded
volume = pd.DataFrame([{
    "bucket": pd.Timestamp(bucket), **values,
    "rate": round(100 * values["succeeded"] / values["decided"], 1) if values["decided"] else None,
    "sample": charts.SAMPLE_SMALL if values["decided"] < SMALL_SAMPLE else charts.SAMPLE_ENOUGH,
} for bucket, values in sorted(per_bucket.items())])
charts.show("volume_and_rate", volume, bucket_title, key="metrics_rates_chart")
small = int((volume["sample"] == charts.SAMPLE_SMALL).sum())
st.caption("Bars: attempts started. Line: succeeded ÷ attempts with an outcome (pending ones "
           "have none yet)." + (f" Hollow points ({small}) rest on fewer than {SMALL_SAMPLE} "
                                "outcomes: read them as noise, or group by week."
                                if small else ""))
details(humanise([{
    "bucket": p.bucket, "method": labels.method(p.method), "attempts": p.attempts,
    "succeeded": p.succeeded, "failed": p.failed, "abandoned": p.abandoned,
    "pending": p.pending, "success_rate": p.success_rate,
} for p in data["rates"]], ["bucket", "method", "attempts", "succeeded", "failed", "abandoned",
                             "pending", "success_rate"], {"bucket": bucket_title}),
        key="metrics_rates", file_name=f"success-rate-by-{grain.value}.csv")

# ---- funnel ----------------------------------------------------------------------------------
st.subheader("Funnel")
funnel = pd.DataFrame([{
    "stage": s.stage, "freelancers": s.freelancers, "share": s.share_of_issued,
    "label": f"{s.freelancers:,}" + (f" ({s.share_of_issued:g}%)"
                                     if s.share_of_issued is not None else ""),
} for s in data["funnel"]])
charts.show("funnel", funnel, key="metrics_funnel_chart")
st.caption("Distinct freelancers with a link issued in the range; each stage is part of the "
           "one before. Verified: payable (transfers active, payouts enabled, details submitted, nothing due).")
details(humanise([{"stage": s.stage, "freelancers": s.freelancers,
                   "share_of_issued": s.share_of_issued} for s in data["funnel"]],
                 ["stage", "freelancers", "share_of_issued"]),
        key="metrics_funnel", file_name="connection-funnel.csv")

# ---- failure reasons -------------------------------------------------------------------------
st.subheader("Why attempts fail")
reasons = [{"bucket": p.bucket, "reason": labels.failure_reason(p.reason),
            "attempts": p.attempts} for p in data["reasons"]]
if reasons:
    frame = pd.DataFrame(reasons)
    frame["bucket"] = pd.to_datetime(frame["bucket"])
    charts.show("failure_reasons", frame, bucket_title, key="metrics_reasons_chart")
    details(humanise(reasons, ["bucket", "reason", "attempts"], {"bucket": bucket_title}),
            key="metrics_reasons", file_name=f"failure-reasons-by-{grain.value}.csv")
else:
    st.success("No failed or abandoned attempts in this range.")

# ---- time to connect -------------------------------------------------------------------------
st.subheader("Time to connect")
left, right = st.columns(2)
with left:
    st.markdown("**How long connections took**")
    durations = pd.DataFrame([{"bucket": b.bucket, "attempts": b.attempts}
                              for b in data["durations"]])
    charts.show("duration_distribution", durations, key="metrics_durations_chart")
with right:
    st.markdown("**Median per week**")
    if timing.weeks:
        # Minutes unless some week's median runs into hours: "0.3 h" reads worse than "20 min".
        in_hours = max(w.median_seconds for w in timing.weeks) >= 3 * 3_600
        medians = pd.DataFrame([{
            "week": pd.Timestamp(w.week), "connections": w.connections,
            "median": round(w.median_seconds / (3_600 if in_hours else 60), 1),
            "sample": charts.SAMPLE_SMALL if w.small_sample else charts.SAMPLE_ENOUGH,
        } for w in timing.weeks])
        charts.show("median_by_week", medians, "hours" if in_hours else "minutes",
                    key="metrics_median_chart")
    else:
        st.info("No connection was made in this range.")
details(humanise([{"bucket": b.bucket, "attempts": b.attempts} for b in data["durations"]],
                 ["bucket", "attempts"], {"bucket": "From link to connected",
                                          "attempts": "Connections"}),
        key="metrics_durations", file_name="time-to-connect.csv")
if timing.weeks:
    details(humanise([{"week": w.week, "connections": w.connections,
                       "median_hours": w.median_hours,
                       "sample": "small" if w.small_sample else ""} for w in timing.weeks],
                     ["week", "connections", "median_hours", "sample"],
                     {"week": "Week of", "median_hours": "Median (hours)"}),
            key="metrics_medians", file_name="median-time-to-connect.csv")
