"""The Connection metrics page's sections: KPI tiles, then four charts, each with its numbers.

Each chart has its table and CSV in an expander under it (aggregates only: no freelancer
appears, so anyone who may open the page may download them). Charts are Altair specs built once
(``dashboard.charts``); the page reads the data (``dashboard.cache.metrics``) and calls these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.page_helpers import kpi_tile, table_with_csv
from lib import labels
from lib.connection_metrics import Grain
from lib.connection_report import ConnectionReport
from lib.connection_timing import SMALL_SAMPLE


def at_a_glance(data: ConnectionReport) -> None:
    attempts = sum(p.attempts for p in data.rates)
    decided = sum(p.decided for p in data.rates)
    succeeded = sum(p.succeeded for p in data.rates)
    tiles = st.columns(4)
    with tiles[0]:
        kpi_tile("Attempts started", f"{attempts:,}", help="Links issued in the range.")
    with tiles[1]:
        kpi_tile("Success rate", f"{round(100 * succeeded / decided, 1)}%" if decided else "–",
                 help=f"{succeeded:,} of {decided:,} attempts with an outcome succeeded.")
    with tiles[2]:
        kpi_tile("Median time to connect", _duration_text(data.timing.median_seconds),
                 help=f"From link to connection, over {data.timing.connections:,} connections "
                      "(read from 10 %-wide duration buckets: within about 5 % of the exact "
                      "median).")
    with tiles[3]:
        paid = data.funnel[-1].freelancers if data.funnel else 0
        kpi_tile("Links that led to a payout", f"{paid:,}",
                 help="Freelancers with a link in the range who are now verified and were paid.")


def attempts_and_rate(data: ConnectionReport, grain: Grain, bucket_title: str) -> None:
    st.subheader("Attempts and success rate")
    per_bucket: dict[date, dict[str, int]] = {}
    for point in data.rates:
        entry = per_bucket.setdefault(point.bucket, {"attempts": 0, "decided": 0, "succeeded": 0})
        entry["attempts"] += point.attempts
        entry["decided"] += point.decided
        entry["succeeded"] += point.succeeded
    volume = pd.DataFrame([{
        "bucket": pd.Timestamp(bucket), **values,
        "rate": (round(100 * values["succeeded"] / values["decided"], 1) if values["decided"]
                 else None),
        "sample": charts.SAMPLE_SMALL if values["decided"] < SMALL_SAMPLE else charts.SAMPLE_ENOUGH,
    } for bucket, values in sorted(per_bucket.items())])
    charts.show("volume_and_rate", volume, bucket_title, key="metrics_rates_chart")
    small = int((volume["sample"] == charts.SAMPLE_SMALL).sum())
    st.caption("Bars: attempts started. Line: succeeded ÷ attempts with an outcome (pending ones "
               "have none yet)." + (f" Hollow points ({small}) rest on fewer than {SMALL_SAMPLE} "
                                    "outcomes: read them as noise, or group by week."
                                    if small else ""))
    _details([{
        "bucket": p.bucket, "method": labels.method(p.method), "attempts": p.attempts,
        "succeeded": p.succeeded, "failed": p.failed, "abandoned": p.abandoned,
        "pending": p.pending, "success_rate": p.success_rate,
    } for p in data.rates], ["bucket", "method", "attempts", "succeeded", "failed", "abandoned",
                             "pending", "success_rate"], {"bucket": bucket_title},
             key="metrics_rates", file_name=f"success-rate-by-{grain.value}.csv")


def funnel(data: ConnectionReport) -> None:
    st.subheader("Funnel")
    frame = pd.DataFrame([{
        "stage": s.stage, "freelancers": s.freelancers, "share": s.share_of_issued,
        "label": f"{s.freelancers:,}" + (f" ({s.share_of_issued:g}%)"
                                         if s.share_of_issued is not None else ""),
    } for s in data.funnel])
    charts.show("funnel", frame, key="metrics_funnel_chart")
    st.caption("Distinct freelancers with a link issued in the range; each stage is part of the "
               "one before. Verified: payable (transfers active, payouts enabled, details "
               "submitted, nothing due).")
    _details([{"stage": s.stage, "freelancers": s.freelancers,
               "share_of_issued": s.share_of_issued} for s in data.funnel],
             ["stage", "freelancers", "share_of_issued"],
             key="metrics_funnel", file_name="connection-funnel.csv")


def failure_reasons(data: ConnectionReport, grain: Grain, bucket_title: str) -> None:
    st.subheader("Why attempts fail")
    reasons = [{"bucket": p.bucket, "reason": labels.failure_reason(p.reason),
                "attempts": p.attempts} for p in data.reasons]
    if not reasons:
        st.success("No failed or abandoned attempts in this range.")
        return
    frame = pd.DataFrame(reasons)
    frame["bucket"] = pd.to_datetime(frame["bucket"])
    charts.show("failure_reasons", frame, bucket_title, key="metrics_reasons_chart")
    _details(reasons, ["bucket", "reason", "attempts"], {"bucket": bucket_title},
             key="metrics_reasons", file_name=f"failure-reasons-by-{grain.value}.csv")


def time_to_connect(data: ConnectionReport) -> None:
    st.subheader("Time to connect")
    weeks = data.timing.weeks
    left, right = st.columns(2)
    with left:
        st.markdown("**How long connections took**")
        durations = pd.DataFrame([{"bucket": b.bucket, "attempts": b.attempts}
                                  for b in data.durations])
        charts.show("duration_distribution", durations, key="metrics_durations_chart")
    with right:
        st.markdown("**Median per week**")
        if weeks:
            # Minutes unless some week's median runs into hours: "0.3 h" reads worse than "20 min".
            in_hours = max(w.median_seconds for w in weeks) >= 3 * 3_600
            medians = pd.DataFrame([{
                "week": pd.Timestamp(w.week), "connections": w.connections,
                "median": round(w.median_seconds / (3_600 if in_hours else 60), 1),
                "sample": charts.SAMPLE_SMALL if w.small_sample else charts.SAMPLE_ENOUGH,
            } for w in weeks])
            charts.show("median_by_week", medians, "hours" if in_hours else "minutes",
                        key="metrics_median_chart")
        else:
            st.info("No connection was made in this range.")
    _details([{"bucket": b.bucket, "attempts": b.attempts} for b in data.durations],
             ["bucket", "attempts"], {"bucket": "From link to connected",
                                      "attempts": "Connections"},
             key="metrics_durations", file_name="time-to-connect.csv")
    if weeks:
        _details([{"week": w.week, "connections": w.connections,
                   "median_hours": w.median_hours,
                   "sample": "small" if w.small_sample else ""} for w in weeks],
                 ["week", "connections", "median_hours", "sample"],
                 {"week": "Week of", "median_hours": "Median (hours)"},
                 key="metrics_medians", file_name="median-time-to-connect.csv")


def _details(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
             headers: Mapping[str, str] | None = None, *, key: str, file_name: str) -> None:
    """The chart's numbers: a table and its CSV (the same human columns), made only while the
    expander is open (Streamlit's lazy expander: opening it reruns the page, from the cache)."""
    with st.expander("Table and CSV", key=f"{key}_open", on_change="rerun") as details:
        if details.open:
            table_with_csv(rows, columns, key=key, file_name=file_name, labels=headers)


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 3_600:.1f} h" if seconds >= 3_600 else f"{seconds / 60:.0f} min"
