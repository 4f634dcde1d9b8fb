"""Connection metrics page: roles, empty and seeded data, day/week toggle, a table under each chart."""

from __future__ import annotations

import pytest

from tests.factories_dashboard import (
    open_page,
    page_text,
    queries_to_render,
    run_page_directly,
    seed_many,
)


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
    assert len(at.get("vega_lite_chart")) == 4
    assert len(at.dataframe) == 4 and len(at.get("download_button")) == 4
    funnel = at.dataframe[1].value
    assert list(funnel["stage"]) == ["Links issued", "Returned", "Connected", "Verified",
                                     "First payout"]
    assert list(funnel["freelancers"])[:3] == [210, 210, 180]
    daily = len(at.dataframe[0].value)

    at.radio(key="metrics_grain").set_value("week").run()
    assert not at.exception
    assert len(at.dataframe[0].value) < daily
    reasons = at.dataframe[2].value
    assert set(reasons["reason"]) == {"access_denied"} and reasons["attempts"].sum() == 30


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
    # 4 for the charts, 1 for the router's "anything changed?" check (dashboard.cache).
    assert len(small) == len(large) == 5, large
