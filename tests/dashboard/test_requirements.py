"""Requirements due page: roles, empty and seeded data, the deadline filter, chart and exports."""

from __future__ import annotations

import pytest

from tests.factories_dashboard import (
    add_freelancer,
    open_page,
    page_text,
    queries_to_render,
    run_page_directly,
    seed_many,
    statuses,
)


@pytest.mark.parametrize("user", ["admin", "finance"])
def test_allowed_roles_on_an_empty_database(app, user) -> None:
    at = open_page(app, "requirements.py", user)
    assert not at.exception
    assert "No connected account has anything due." in page_text(at)


@pytest.mark.parametrize("user", ["admin", "finance"])
def test_allowed_roles_on_seeded_data(app, session_factory, user) -> None:
    seed_many(session_factory, 210)   # 30 each of restricted, pending, in review, disabled
    at = open_page(app, "requirements.py", user)
    assert not at.exception
    assert at.get("vega_lite_chart")
    accounts = at.dataframe[1].value
    assert len(accounts) == 50 and "Page 1 of 3 · 120 rows" in page_text(at)
    assert statuses(accounts)[0] == "Disabled"               # overdue deadlines first
    assert "Generate an onboarding link" in accounts["What to do"].iloc[0]
    assert len(at.get("download_button")) == 2                 # chart table + export


def test_deadline_filter(app, session_factory) -> None:
    with session_factory.begin() as session:
        add_freelancer(session, state="restricted", name="Soon", deadline_days=3)
        add_freelancer(session, state="restricted", name="Later", deadline_days=30)
        add_freelancer(session, state="pending_verification", name="Review")
    at = open_page(app, "requirements.py", "finance")
    assert list(at.dataframe[1].value["Freelancer"]) == ["Soon", "Later", "Review"]
    at.number_input(key="requirements_within_days").set_value(7).run()
    assert not at.exception
    assert list(at.dataframe[1].value["Freelancer"]) == ["Soon"]
    counts = at.dataframe[0].value
    assert list(counts["Requirement"]) == [
        "Identity document (passport, ID card or licence)", "Government ID number",
        "Identity document (passport, ID card or licence)"]
    at.number_input(key="requirements_within_days").set_value(0).run()
    assert "No connected account has anything due with a deadline within 0 days." in page_text(at)


def test_manager_cannot_open_it(app) -> None:
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_page(app, "requirements.py", "manager")


def test_manager_running_the_script_anyway_is_refused(dashboard_env) -> None:
    at = run_page_directly("requirements.py", "manager")
    assert not at.exception
    assert [e.value for e in at.error] == ["manager (manager) may not view requirements."]


def test_query_count_does_not_grow_with_the_data(app, session_factory) -> None:
    seed_many(session_factory, 50)
    small = queries_to_render(app, "requirements.py", "finance")
    seed_many(session_factory, 450)
    large = queries_to_render(app, "requirements.py", "finance")
    assert 4 <= len(small) == len(large) <= 8, large


def test_bars_are_coloured_by_urgency_with_their_counts(app, session_factory) -> None:
    """Issue 21: past due is the alarming colour, each bar carries its count."""
    import json

    seed_many(session_factory, 70)
    at = open_page(app, "requirements.py", "finance")
    [chart] = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    bars, counts = spec["layer"]
    colour = bars["encoding"]["color"]["scale"]
    assert colour["domain"][0] == "Past due" and colour["range"][0] == "#d92d20"
    assert dict(zip(colour["domain"], colour["range"], strict=True))["Eventually due"] != "#d92d20"
    assert counts["mark"]["type"] == "text" and counts["encoding"]["text"]["field"] == "accounts"
    assert [p["name"] for p in spec["params"]] == ["pick"]   # a click picks (list, requirement)


def test_a_requirement_lists_exactly_its_accounts(app, session_factory) -> None:
    """What a bar leads to: the accounts it counts (chosen here through the selectbox, which a
    click on the bar sets too)."""
    with session_factory.begin() as session:
        add_freelancer(session, state="disabled", name="Overdue")
        add_freelancer(session, state="restricted", name="Soon", deadline_days=3)
        add_freelancer(session, state="pending_verification", name="Review")
    at = open_page(app, "requirements.py", "finance")
    picker = at.selectbox(key="requirements_picked")
    past_due = ("past_due", "Bank account or debit card for payouts")
    assert "Bank account or debit card for payouts (past due): 1" in picker.options
    picker.set_value(past_due).run()
    assert not at.exception
    assert list(at.dataframe[1].value["Freelancer"]) == ["Overdue"]
    assert "1 account(s) asked for Bank account or debit card for payouts (past due)" in \
        page_text(at)
    at.selectbox(key="requirements_picked").set_value(None).run()
    assert list(at.dataframe[1].value["Freelancer"]) == ["Overdue", "Soon", "Review"]
