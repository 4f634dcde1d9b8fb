"""Overview page: each role, empty and seeded databases, the refusal, the alerts."""

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
    at = open_page(app, "overview.py", user)
    assert not at.exception
    assert "No connected accounts yet" in page_text(at)
    assert [m.label for m in at.metric][:3] == [
        "Connected accounts", "Share ACTIVE", "Connection success (30 days)"]


@pytest.mark.parametrize("user", ["admin", "manager"])
def test_allowed_roles_on_seeded_data(app, session_factory, user) -> None:
    seed_many(session_factory, 210)
    at = open_page(app, "overview.py", user)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Connected accounts"] == "180"   # 6 of every 7 states are connected
    assert metrics["Share ACTIVE"] == "16.7%"       # 30 of 180
    assert metrics["Past due"] == "30"
    assert "USD" in metrics
    assert any("past-due" in e.value for e in at.error)


def test_finance_cannot_open_it(app) -> None:
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_page(app, "overview.py", "finance")


def test_finance_running_the_script_anyway_is_refused(dashboard_env) -> None:
    at = run_page_directly("overview.py", "finance")
    assert not at.exception
    assert [e.value for e in at.error] == ["finance (finance) may not view overview."]
    assert not at.metric


def test_query_count_does_not_grow_with_the_data(app, session_factory) -> None:
    """Issue 7: the Overview's queries are aggregates, the same number at 50 and 500 accounts."""
    seed_many(session_factory, 50)
    small = queries_to_render(app, "overview.py", "admin")
    seed_many(session_factory, 450)
    large = queries_to_render(app, "overview.py", "admin")
    # A fixed number: the KPIs and charts' aggregates, the router's checks, the funds-needed
    # check (issue 21) and the open alerts (issue 20).
    assert 5 <= len(small) == len(large) <= 12, large


def test_refresh_now_reads_new_data(app, session_factory) -> None:
    at = open_page(app, "overview.py", "admin")
    assert {m.label: m.value for m in at.metric}["Connected accounts"] == "0"
    seed_many(session_factory, 7)
    at.run()
    assert {m.label: m.value for m in at.metric}["Connected accounts"] == "0"   # cached
    at.button(key="overview_refresh").click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Connected accounts"] == "6"
