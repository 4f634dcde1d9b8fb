"""Requirements due: who is listed, in which order, counts per label, remediation in the export."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from lib.db import utcnow
from lib.errors import PermissionDeniedError
from lib.models import ConnectedAccount
from lib.requirements_queries import (
    REMEDY_DASHBOARD,
    REMEDY_LINK,
    REMEDY_REJECTED,
    REMEDY_WAIT,
    RequirementCount,
    iter_export_rows,
    list_requirements_due,
    remediation,
    requirement_counts,
)
from lib.roles import Operator
from tests.factories_dashboard import add_freelancer

FINANCE = Operator.from_role_names("fin", ["finance"])
MANAGER = Operator.from_role_names("max", ["manager"])
NOW = utcnow()


@pytest.fixture
def planted(session_factory) -> None:
    with session_factory.begin() as session:
        add_freelancer(session, state="active", name="Active", now=NOW)       # nothing due
        add_freelancer(session, state="restricted", name="Later", now=NOW, deadline_days=20)
        add_freelancer(session, state="restricted", name="Soon", now=NOW, deadline_days=3,
                       account_type="standard", method="oauth")
        add_freelancer(session, state="disabled", name="Overdue", now=NOW)     # deadline -2 d
        add_freelancer(session, state="pending_verification", name="Review", now=NOW)
        add_freelancer(session, state="pending", name="New", now=NOW)          # no deadline
        add_freelancer(session, state="not_connected", name="Nobody", now=NOW)


def test_sorted_by_deadline_none_last(session_factory, planted) -> None:
    with session_factory() as session:
        page = list_requirements_due(session, operator=FINANCE, now=NOW)
    assert page.total == 5
    assert [r.name for r in page.rows][:3] == ["Overdue", "Soon", "Later"]
    assert sorted(r.name for r in page.rows[3:]) == ["New", "Review"]
    soon = page.rows[1]
    assert soon.labels("currently_due") == [
        "Identity document (passport, ID card or licence) (individual.verification.document)"]
    assert soon.remediation == REMEDY_DASHBOARD
    assert page.rows[0].remediation == REMEDY_LINK


def test_only_the_not_contacted_total_is_capped(session_factory, planted, monkeypatch) -> None:
    """Issue 22: the totals the summary serves are exact at any size; the one it cannot (not
    contacted lately) stops at the cap ("more than"), and is exact below it."""
    from lib import requirements_queries

    monkeypatch.setattr(requirements_queries, "COUNT_CAP", 3)
    with session_factory() as session:
        every = list_requirements_due(session, operator=FINANCE, now=NOW)
        narrow = list_requirements_due(session, operator=FINANCE, within_days=7, now=NOW)
        chase = list_requirements_due(session, operator=FINANCE, now=NOW, not_contacted_days=7)
        soon = list_requirements_due(session, operator=FINANCE, now=NOW, within_days=7,
                                     not_contacted_days=7)
    assert (every.total, every.total_is_lower_bound, len(every.rows)) == (5, False, 5)
    assert (narrow.total, narrow.total_is_lower_bound) == (2, False)
    assert (chase.total, chase.total_is_lower_bound) == (3, True)
    assert (soon.total, soon.total_is_lower_bound) == (2, False)


def test_within_days_includes_overdue(session_factory, planted) -> None:
    with session_factory() as session:
        page = list_requirements_due(session, operator=FINANCE, within_days=7, now=NOW)
    assert [r.name for r in page.rows] == ["Overdue", "Soon"]


def test_counts_per_label(session_factory, planted) -> None:
    bank, id_doc = "Bank account or debit card for payouts", (
        "Identity document (passport, ID card or licence)")
    tos, id_number = "Accept Stripe's terms of service", "Government ID number"
    with session_factory() as session:
        counts = requirement_counts(session, operator=FINANCE, now=NOW)
        soon = requirement_counts(session, operator=FINANCE, within_days=7, now=NOW)
    assert [(c.category, c.label, c.accounts) for c in counts] == [
        ("Past due", bank, 1),
        ("Currently due", bank, 2), ("Currently due", id_doc, 2), ("Currently due", tos, 1),
        ("Eventually due", bank, 2), ("Eventually due", id_number, 2),
        ("Eventually due", id_doc, 2), ("Eventually due", tos, 1),
        ("Pending verification", id_doc, 1),
    ]
    assert [(c.category, c.label, c.accounts) for c in soon] == [
        ("Past due", bank, 1), ("Currently due", bank, 1), ("Currently due", id_doc, 1),
        ("Eventually due", bank, 1), ("Eventually due", id_number, 1),
        ("Eventually due", id_doc, 1),
    ]


def test_codes_sharing_a_label_count_an_account_once(session_factory) -> None:
    dob = ["individual.dob.day", "individual.dob.month", "individual.dob.year"]
    with session_factory.begin() as session:
        for _ in range(2):
            freelancer = add_freelancer(session, state="restricted", now=NOW)
            account = session.scalars(select(ConnectedAccount).where(
                ConnectedAccount.stripe_id == freelancer.stripe_account_id)).one()
            account.requirements = {**account.requirements, "currently_due": dob}
    with session_factory() as session:
        counts = requirement_counts(session, operator=FINANCE, now=NOW)
    assert RequirementCount("Currently due", "Date of birth", 2) in counts


def test_export_has_labels_and_remediation(session_factory, planted) -> None:
    with session_factory() as session:
        rows = list(iter_export_rows(session, operator=FINANCE, within_days=7, now=NOW))
        with pytest.raises(PermissionDeniedError):
            list(iter_export_rows(session, operator=MANAGER))
    assert [r["name"] for r in rows] == ["Overdue", "Soon"]
    assert rows[0]["past_due"] == "Bank account or debit card for payouts (external_account)"
    assert rows[0]["remediation"] == REMEDY_LINK and rows[0]["stripe_account_id"]


def test_remediation_rules() -> None:
    assert remediation(account_type="express", connection_method=None, status="REJECTED",
                       due_now=True, eventually_due=True) == REMEDY_REJECTED
    assert remediation(account_type="express", connection_method=None, status="PENDING",
                       due_now=False, eventually_due=False) == REMEDY_WAIT
    assert remediation(account_type=None, connection_method="oauth", status="RESTRICTED",
                       due_now=True, eventually_due=True) == REMEDY_DASHBOARD
    assert remediation(account_type="express", connection_method=None, status="ACTIVE",
                       due_now=False, eventually_due=True).startswith("Not urgent")


def test_a_bar_of_the_chart_filters_the_list_to_its_accounts(session_factory, planted) -> None:
    """Issue 21: each (list, requirement) bar leads to exactly the accounts it counts."""
    from lib.errors import ValidationError
    from lib.requirements_queries import RequirementFilter

    with session_factory() as session:
        counts = requirement_counts(session, operator=FINANCE, now=NOW)
        for count in counts:
            chosen = RequirementFilter(count.bucket, count.label)
            page = list_requirements_due(session, operator=FINANCE, now=NOW,
                                         requirement=chosen)
            assert page.total == len(page.rows) == count.accounts, count
            exported = list(iter_export_rows(session, operator=FINANCE, now=NOW,
                                             requirement=chosen))
            assert [r["name"] for r in exported] == [r.name for r in page.rows]
        past_due = list_requirements_due(session, operator=FINANCE, now=NOW,
                                         requirement=RequirementFilter(
                                             "past_due", "Bank account or debit card for payouts"))
    assert [r.name for r in past_due.rows] == ["Overdue"]
    with pytest.raises(ValidationError, match="Unknown requirements list"):
        RequirementFilter("soon_due", "x")
