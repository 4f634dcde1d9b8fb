"""The dashboard's charts, authored in Altair, each built and validated once per process.

Why specs are built once
    ``st.altair_chart`` converts the chart with ``to_dict()`` on every script run, and Altair
    validates every encoding channel against the Vega-Lite JSON schema each time: 15–25 ms per
    chart on this machine, for specs that never change between runs (only the rows do). So each
    chart here is an Altair chart *without data*, turned into a Vega-Lite dict once (validated
    then, on first use in the process) and kept; a run hands ``st.vega_lite_chart`` that dict
    and the rows, exactly what ``st.altair_chart`` would send the browser.
    ``python -m bench.charts`` measures both ways (``bench/RESULTS.md``).

What the charts say
    Colours carry meaning and are the same everywhere: the urgency scale of requirements (past
    due is the alarming red), one colour for volume (bars) and one for rates (line). Points based
    on fewer than :data:`lib.connection_timing.SMALL_SAMPLE` cases are drawn hollow and named in
    the tooltip: a 0 % or 100 % from one attempt is not a trend.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable
from typing import Any, Literal

import altair as alt
import pandas as pd
import streamlit as st

from lib.connection_metrics import DURATION_BUCKETS, FUNNEL_STAGES

VOLUME = "#98a2b3"
RATE = "#635bff"
#: Requirements by urgency: past due alarms, due now warns, later and in review are calm.
URGENCY = {"Past due": "#d92d20", "Currently due": "#f79009",
           "Pending verification": "#2e90fa", "Eventually due": "#98a2b3"}
URGENCY_ORDER = ["Past due", "Currently due", "Pending verification", "Eventually due"]
SAMPLE_ENOUGH = "enough"
SAMPLE_SMALL = "small sample"

_lock = threading.Lock()


def _strip_placeholder_data(node: Any) -> Any:
    """Drop the ``{"name": "empty"}`` data Altair adds to a chart built without data."""
    if isinstance(node, dict):
        return {k: _strip_placeholder_data(v) for k, v in node.items()
                if not (k == "data" and v == {"name": "empty"}) and k != "datasets"}
    if isinstance(node, list):
        return [_strip_placeholder_data(v) for v in node]
    return node


def build_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart as a Vega-Lite dict, validated (Altair's ``to_dict``), without theme defaults."""
    with _lock, alt.theme.enable("none"):
        spec = chart.to_dict()
    return _strip_placeholder_data(spec)


#: name -> builder of the Altair chart (no data). Parameters are plain strings.
TEMPLATES: dict[str, Callable[..., alt.TopLevelMixin]] = {}


def template(name: str) -> Callable[[Callable[..., alt.TopLevelMixin]],
                                    Callable[..., alt.TopLevelMixin]]:
    def register(builder: Callable[..., alt.TopLevelMixin]) -> Callable[..., alt.TopLevelMixin]:
        TEMPLATES[name] = builder
        return builder
    return register


@functools.cache
def spec(name: str, *args: str) -> dict[str, Any]:
    """The validated spec of template ``name`` (built on first use, then reused)."""
    return build_spec(TEMPLATES[name](*args))


def show(name: str, frame: pd.DataFrame, *args: str, key: str, height: int | None = None,
         on_select: Literal["ignore", "rerun"] | Callable[[], None] = "ignore") -> Any:
    """Draw template ``name`` over ``frame`` as wide as the page."""
    chosen = copy.deepcopy(spec(name, *args))
    if height is not None:
        chosen["height"] = height
    if on_select == "ignore":
        return st.vega_lite_chart(frame, chosen, width="stretch", key=key)
    # Streamlit's overloads tell a selectable chart (it returns the selection) from a plain one.
    return st.vega_lite_chart(frame, chosen, width="stretch", key=key, on_select=on_select,
                              selection_mode="pick")


# ---- connection metrics -----------------------------------------------------------------------


def _sample_points(field: str, title: str, axis: alt.Axis | None = None,
                   scale: alt.Scale | None = None) -> alt.Chart:
    """Points of a rate/median line: filled when the sample is enough, hollow when small."""
    return alt.Chart().mark_point(size=70, strokeWidth=2, color=RATE).encode(
        y=alt.Y(f"{field}:Q", title=title, axis=axis or alt.Axis(),
                scale=scale or alt.Scale()),
        fill=alt.Fill("sample:N", title="Sample",
                      scale=alt.Scale(domain=[SAMPLE_ENOUGH, SAMPLE_SMALL],
                                      range=[RATE, "#ffffff"])),
    )


def _bucket_axis(title: str, field: str = "bucket") -> alt.X:
    """Days or weeks as bands (bars as wide as their bucket), labelled "13 Sep"."""
    return alt.X(f"yearmonthdate({field}):O", title=title,
                 axis=alt.Axis(format="%d %b", formatType="time", labelAngle=0,
                               labelOverlap="greedy"))


@template("volume_and_rate")
def volume_and_rate(bucket_title: str) -> alt.TopLevelMixin:
    """Attempts started per bucket (bars, left axis) and the success rate (line, right axis)."""
    x = _bucket_axis(bucket_title)
    tips = [alt.Tooltip("bucket:T", title=bucket_title, format="%Y-%m-%d"),
            alt.Tooltip("attempts:Q", title="Attempts started"),
            alt.Tooltip("decided:Q", title="With an outcome"),
            alt.Tooltip("succeeded:Q", title="Succeeded"),
            alt.Tooltip("rate:Q", title="Success rate (%)"),
            alt.Tooltip("sample:N", title="Sample")]
    bars = alt.Chart().mark_bar(color=VOLUME, opacity=0.55).encode(
        x=x, y=alt.Y("attempts:Q", title="Attempts started", axis=alt.Axis(titleColor="#475467")),
        tooltip=tips)
    rate_axis = alt.Axis(titleColor=RATE, orient="right")
    line = alt.Chart().mark_line(color=RATE, strokeWidth=2.5).encode(
        x=x, y=alt.Y("rate:Q", title="Success rate (%)", scale=alt.Scale(domain=[0, 100]),
                     axis=rate_axis), tooltip=tips)
    points = _sample_points("rate", "Success rate (%)", rate_axis,
                            alt.Scale(domain=[0, 100])).encode(x=x, tooltip=tips)
    return alt.layer(bars, line, points).resolve_scale(y="independent").properties(height=300)


@template("funnel")
def funnel() -> alt.TopLevelMixin:
    y = alt.Y("stage:N", title=None, sort=list(FUNNEL_STAGES),
              axis=alt.Axis(labelLimit=200, labelFontSize=13))
    tips = [alt.Tooltip("stage:N", title="Stage"), alt.Tooltip("freelancers:Q", title="Freelancers"),
            alt.Tooltip("share:Q", title="Share of links issued (%)")]
    bars = alt.Chart().mark_bar(color=RATE).encode(
        y=y, x=alt.X("freelancers:Q", title="Freelancers"), tooltip=tips)
    labels = alt.Chart().mark_text(align="left", dx=4, fontSize=13).encode(
        y=y, x=alt.X("freelancers:Q"), text="label:N")
    return alt.layer(bars, labels).properties(height=220)


@template("failure_reasons")
def failure_reasons(bucket_title: str) -> alt.TopLevelMixin:
    return alt.Chart().mark_bar().encode(
        x=_bucket_axis(bucket_title),
        y=alt.Y("attempts:Q", title="Attempts", stack="zero"),
        color=alt.Color("reason:N", title="Reason", scale=alt.Scale(scheme="tableau10"),
                        legend=alt.Legend(labelLimit=320)),
        tooltip=[alt.Tooltip("bucket:T", title=bucket_title, format="%Y-%m-%d"),
                 alt.Tooltip("reason:N", title="Reason"),
                 alt.Tooltip("attempts:Q", title="Attempts")],
    ).properties(height=260)


@template("duration_distribution")
def duration_distribution() -> alt.TopLevelMixin:
    x = alt.X("bucket:N", title="From link to connected", sort=[b for b, _ in DURATION_BUCKETS],
              axis=alt.Axis(labelAngle=0))
    bars = alt.Chart().mark_bar(color=RATE).encode(
        x=x, y=alt.Y("attempts:Q", title="Connections"),
        tooltip=[alt.Tooltip("bucket:N", title="Took"),
                 alt.Tooltip("attempts:Q", title="Connections")])
    labels = alt.Chart().mark_text(dy=-8, fontSize=12).encode(
        x=x, y=alt.Y("attempts:Q"), text=alt.Text("attempts:Q"))
    return alt.layer(bars, labels).properties(height=240)


@template("median_by_week")
def median_by_week(unit: str) -> alt.TopLevelMixin:
    """The weekly median in ``unit`` (minutes or hours: the rows' ``median`` is in it)."""
    x = _bucket_axis("Week of", "week")
    tips = [alt.Tooltip("week:T", title="Week of", format="%Y-%m-%d"),
            alt.Tooltip("median:Q", title=f"Median ({unit})"),
            alt.Tooltip("connections:Q", title="Connections"),
            alt.Tooltip("sample:N", title="Sample")]
    title = f"Median ({unit})"
    line = alt.Chart().mark_line(color=RATE, strokeWidth=2.5).encode(
        x=x, y=alt.Y("median:Q", title=title), tooltip=tips)
    points = _sample_points("median", title).encode(x=x, tooltip=tips)
    return alt.layer(line, points).properties(height=240)


# ---- requirements -----------------------------------------------------------------------------


@template("requirements_due")
def requirements_due() -> alt.TopLevelMixin:
    """Accounts per requirement, one bar per (list, requirement), most urgent list first and
    the most asked first within it; a click picks (list, requirement).

    The rows need ``row`` (unique: ``bucket|label``), ``label``, ``category``, ``bucket`` and
    ``accounts``, in the order they are drawn (urgency, then accounts descending).
    """
    pick = alt.selection_point(name="pick", fields=["bucket", "label"])
    # The rows come sorted (urgency, then accounts): a field sort is dropped when layers union
    # their domains, the order of the data is not.
    y = alt.Y("row:N", title=None, sort=None,
              axis=alt.Axis(labelLimit=360, labelFontSize=12,
                            labelExpr="split(datum.label, '|')[1]"))
    colour = alt.Color("category:N", title="When", sort=URGENCY_ORDER,
                       scale=alt.Scale(domain=URGENCY_ORDER,
                                       range=[URGENCY[n] for n in URGENCY_ORDER]),
                       legend=alt.Legend(orient="top"))
    tips = [alt.Tooltip("category:N", title="When"), alt.Tooltip("label:N", title="Requirement"),
            alt.Tooltip("accounts:Q", title="Accounts")]
    bars = alt.Chart().mark_bar(cursor="pointer", height={"band": 0.75}).encode(
        y=y, x=alt.X("accounts:Q", title="Accounts", axis=alt.Axis(tickMinStep=1, format="d")),
        color=colour, opacity=alt.condition(pick, alt.value(1.0), alt.value(0.35)),
        tooltip=tips,
    ).add_params(pick)
    counts = alt.Chart().mark_text(align="left", dx=4, fontSize=12).encode(
        y=y, x=alt.X("accounts:Q"), text=alt.Text("accounts:Q"))
    return alt.layer(bars, counts)


# ---- finance ----------------------------------------------------------------------------------


@template("bank_failures_by_reason")
def bank_failures_by_reason() -> alt.TopLevelMixin:
    y = alt.Y("reason:N", title=None, sort="-x", axis=alt.Axis(labelLimit=480,
                                                               labelFontSize=12))
    bars = alt.Chart().mark_bar(color=URGENCY["Past due"], height={"band": 0.7}).encode(
        y=y, x=alt.X("failures:Q", title="Failed bank payouts",
                     axis=alt.Axis(tickMinStep=1, format="d")),
        tooltip=[alt.Tooltip("reason:N", title="Reason"),
                 alt.Tooltip("failures:Q", title="Failed payouts")])
    counts = alt.Chart().mark_text(align="left", dx=3).encode(
        y=y, x=alt.X("failures:Q"), text=alt.Text("failures:Q"))
    return alt.layer(bars, counts)
