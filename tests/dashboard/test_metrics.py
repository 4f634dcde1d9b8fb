"""Connection metrics page: roles, empty and seeded data, weekly by default when days are sparse,
volume and rate together with small samples marked, the funnel, reasons, time to connect."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, time, timedelta

import pyarrow as pa
import pytest

from lib.db import utcnow
from tests.factories_dashboard import (
    add_attempt,
    add_freelancer,
    open_page,
    page_text,
    queries_to_render,
    run_page_directly,
    seed_many,
)


def charts(at) -> list[dict]:
    """Each chart's spec and rows, in page order."""
    found = []
    for element in at.get("vega_lite_chart"):
        proto = element.proto
        rows = []
        if proto.data.data:
            rows = pa.ipc.open_stream(io.BytesIO(proto.data.data)).read_all().to_pylist()
        found.append({"spec": json.loads(proto.spec), "rows": rows})
    return found


DETAILS = ("metrics_rates", "metrics_funnel", "metrics_reasons", "metrics_durations",
           "metrics_medians")


def open_details(at) -> None:
    """Open every "Table and CSV" expander: their tables are made only while open."""
    for key in DETAILS:
        at.session_state[f"{key}_open"] = True
    at.run()


def table(at, first_column: str):
    """The table whose first column is ``first_column``."""
    [found] = [t.value for t in at.dataframe if list(t.value.columns)[:1] == [first_column]]
    return found


@pytest.mark.parametrize("user", ["admin", "manager"])
def test_allowed_roles_on_an_empty_database(app, user) -> None:
    at = open_page(app, "metrics.py", user)
    assert not at.exception
    assert "No connection attempts started in this range" in page_text(at)


@pytest.mark.parametrize("user", ["admin", "manager"])
def test_allowed_roles_on_seeded_data(app, session_factory, user) -> None:
    seed_many(session_factory, 210)
    at = open_page(app, "metrics.py", user)
    assert not at.exception
    # About 2.6 attempts a day: sparse, so the page opens grouped by week.
    assert at.radio(key="metrics_grain").value == "Week"
    drawn = charts(at)
    assert len(drawn) == 5                     # volume+rate, funnel, reasons, two of timing
    volume = drawn[0]
    layers = [layer["mark"]["type"] for layer in volume["spec"]["layer"]]
    assert layers == ["bar", "line", "point"]  # attempts as bars, rate as a line and points
    assert volume["spec"]["resolve"] == {"scale": {"y": "independent"}}
    assert sum(row["attempts"] for row in volume["rows"]) == 210
    assert {m.label for m in at.metric} >= {"Attempts started", "Success rate",
                                           "Median time to connect"}
    assert {m.label: m.value for m in at.metric}["Attempts started"] == "210"
    assert not at.dataframe                    # the tables wait for their expanders
    open_details(at)
    assert len(at.dataframe) == len(DETAILS)
    funnel = table(at, "Stage")
    assert list(funnel["Stage"]) == ["Links issued", "Returned", "Connected", "Verified",
                                     "First payout"]
    assert list(funnel["Freelancers"])[:3] == [210, 210, 180]
    assert [row["label"] for row in drawn[1]["rows"]][:3] == ["210 (100%)", "210 (100%)",
                                                               "180 (85.7%)"]
    reasons = [t.value for t in at.dataframe if "Reason" in t.value.columns][0]
    assert set(reasons["Reason"]) == {"Freelancer declined on Stripe"}
    assert reasons["Attempts"].sum() == 30
    weekly = len([t.value for t in at.dataframe if "Method" in t.value.columns][0])

    at.radio(key="metrics_grain").set_value("Day").run()
    assert not at.exception
    assert len([t.value for t in at.dataframe if "Method" in t.value.columns][0]) > weekly
    # Days with one or two attempts: their rate points are drawn hollow, and the page says so.
    day_rows = charts(at)[0]["rows"]
    assert any(row["sample"] == "small sample" for row in day_rows)
    assert "Hollow points" in page_text(at)
    for element in at.dataframe:
        assert all("_" not in str(column) for column in element.value.columns), element.key


def test_a_busy_range_opens_by_day_and_marks_no_small_samples(app, session_factory) -> None:
    now = utcnow()
    # Around midday of each UTC day: anchored on "now", a run just after midnight put some of
    # the day's attempts in the day before (a small sample there, and a failing test).
    midday = datetime.combine(now.date(), time(12), tzinfo=UTC)
    with session_factory.begin() as session:
        freelancer = add_freelancer(session, now=now)
        for day in range(7):
            for n in range(12):
                add_attempt(session, freelancer_id=freelancer.id, outcome="succeeded",
                            started_at=midday - timedelta(days=day, minutes=n + 5),
                            took=timedelta(minutes=20))
    at = open_page(app, "metrics.py", "manager")
    at.date_input(key="metrics_date_range").set_value(
        ((now - timedelta(days=6)).date(), now.date())).run()
    assert not at.exception
    assert at.radio(key="metrics_grain").value == "Week"  # chosen at first sight (90 days)
    at.radio(key="metrics_grain").set_value("Day").run()
    rows = charts(at)[0]["rows"]
    assert len(rows) == 7 and {row["sample"] for row in rows} == {"enough"}
    assert {m.label: m.value for m in at.metric}["Median time to connect"] == "20 min"


def test_finance_cannot_open_it(app) -> None:
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_page(app, "metrics.py", "finance")


def test_finance_running_the_script_anyway_is_refused(dashboard_env) -> None:
    at = run_page_directly("metrics.py", "finance")
    assert not at.exception
    assert [e.value for e in at.error] == ["finance (finance) may not view metrics."]


def test_query_count_does_not_grow_with_the_data(app, session_factory) -> None:
    seed_many(session_factory, 50)
    small = queries_to_render(app, "metrics.py", "manager")
    seed_many(session_factory, 450)
    large = queries_to_render(app, "metrics.py", "manager")
    # A run after the first (the grain is chosen): the funnel's newest attempt, then every
    # series' summaries in one statement (lib.connection_report), and 1 for the router's
    # "anything changed?" check (dashboard.cache). The first run adds 1 to choose the grain.
    assert len(small) == len(large) == 3, large
