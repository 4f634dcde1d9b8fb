"""The Accounts page's reads: filters, search, paging, export == what the filters show, detail."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lib.account_queries import (
    AccountCursor,
    AccountFilter,
    AccountPage,
    DueFilter,
    account_detail,
    country_options,
    export_rows,
    list_accounts,
)
from lib.db import utcnow
from lib.errors import NotFoundError, PermissionDeniedError, ValidationError
from lib.models import Freelancer
from lib.roles import Operator
from tests.factories_dashboard import add_attempt, add_freelancer, add_payout

ADMIN = Operator.from_role_names("alice", ["admin"])
FINANCE = Operator.from_role_names("fin", ["finance"])
MANAGER = Operator.from_role_names("max", ["manager"])
NOW = utcnow()


@pytest.fixture
def planted(session_factory) -> dict[str, int]:
    """Seven freelancers, one per state, with names sorted in creation order."""
    ids: dict[str, int] = {}
    with session_factory.begin() as session:
        for index, (state, country) in enumerate([
            ("active", "US"), ("restricted", "GB"), ("pending", "US"),
            ("pending_verification", "FR"), ("disabled", "US"), ("rejected", "DE"),
            ("not_connected", "FR"),
        ]):
            freelancer = add_freelancer(
                session, state=state, name=f"{chr(65 + index)} {state}", country=country,
                email=f"{state}@example.com", now=NOW,
                connected_at=NOW - timedelta(days=index * 10))
            ids[state] = freelancer.id
    return ids


def _names(page) -> list[str]:
    return [r.name for r in page.rows]


def test_every_freelancer_once_sorted_by_name(session_factory, planted) -> None:
    with session_factory() as session:
        page = list_accounts(session, operator=FINANCE)
    assert page.total == 7
    assert [r.status for r in page.rows] == [
        "ACTIVE", "RESTRICTED", "PENDING", "PENDING", "DISABLED", "REJECTED", "NOT_CONNECTED"]
    restricted = page.rows[1]
    assert restricted.requirements_due == 1 and restricted.past_due == 0
    assert restricted.deadline is not None and restricted.country == "GB"
    assert page.rows[-1].stripe_account_id is None and page.rows[-1].last_synced is None
    assert page.rows[0].charges_enabled and page.rows[0].payouts_enabled


@pytest.mark.parametrize(("filters", "expected"), [
    (AccountFilter(statuses=("PENDING",)), ["C pending", "D pending_verification"]),
    (AccountFilter(statuses=("NOT_CONNECTED", "REJECTED")), ["F rejected", "G not_connected"]),
    (AccountFilter(due=DueFilter.DUE), ["B restricted", "C pending", "E disabled"]),
    (AccountFilter(due=DueFilter.PAST_DUE), ["E disabled"]),
    (AccountFilter(due=DueFilter.NOTHING_DUE),
     ["A active", "D pending_verification", "F rejected", "G not_connected"]),
    (AccountFilter(country="fr"), ["D pending_verification", "G not_connected"]),
    (AccountFilter(connected_since=NOW - timedelta(days=25)),
     ["A active", "B restricted", "C pending"]),
    (AccountFilter(search="RESTRICT"), ["B restricted"]),
    (AccountFilter(search="disabled@example"), ["E disabled"]),
    (AccountFilter(statuses=("ACTIVE",), country="US", search="a "), ["A active"]),
])
def test_filters(session_factory, planted, filters, expected) -> None:
    with session_factory() as session:
        page = list_accounts(session, operator=ADMIN, filters=filters)
        exported = export_rows(session, operator=FINANCE, filters=filters)
    assert _names(page) == expected
    assert page.total == len(expected)
    assert [r["name"] for r in exported] == expected


def test_search_by_account_id_is_exact(session_factory, planted) -> None:
    with session_factory() as session:
        account_id = session.get(Freelancer, planted["disabled"]).stripe_account_id
        page = list_accounts(session, operator=ADMIN, filters=AccountFilter(search=account_id))
    assert _names(page) == ["E disabled"]


def test_search_wildcards_are_literal(session_factory, planted) -> None:
    with session_factory() as session:
        page = list_accounts(session, operator=ADMIN, filters=AccountFilter(search="%"))
    assert page.total == 7  # '%' is stripped, not a wildcard that matches by accident


def test_paging_is_server_side_and_export_covers_every_page(session_factory, planted) -> None:
    with session_factory() as session:
        first = list_accounts(session, operator=ADMIN, limit=3, offset=0)
        second = list_accounts(session, operator=ADMIN, limit=3, offset=3)
        last = list_accounts(session, operator=ADMIN, limit=3, offset=6)
        exported = export_rows(session, operator=ADMIN)
    assert (first.total, len(first.rows), first.has_more) == (7, 3, True)
    assert len(last.rows) == 1 and not last.has_more
    paged = _names(first) + _names(second) + _names(last)
    assert paged == [r["name"] for r in exported]
    assert list(exported[0]) == [
        "freelancer_id", "name", "email", "status", "stripe_account_id", "account_type",
        "country", "charges_enabled", "payouts_enabled", "requirements_due", "past_due",
        "deadline", "connected_at", "last_synced"]


def test_bad_paging_and_status_are_refused(session_factory, planted) -> None:
    with session_factory() as session:
        with pytest.raises(ValidationError):
            list_accounts(session, operator=ADMIN, limit=0)
        with pytest.raises(ValidationError):
            list_accounts(session, operator=ADMIN, filters=AccountFilter(statuses=("NOPE",)))


def test_roles(session_factory, planted) -> None:
    with session_factory() as session:
        with pytest.raises(PermissionDeniedError):
            list_accounts(session, operator=MANAGER)
        with pytest.raises(PermissionDeniedError):
            export_rows(session, operator=MANAGER)
        with pytest.raises(PermissionDeniedError):
            account_detail(session, operator=MANAGER, freelancer_id=planted["active"])


def test_country_options(session_factory, planted) -> None:
    with session_factory() as session:
        assert country_options(session, operator=FINANCE) == ["DE", "FR", "GB", "US"]


def test_detail_has_plain_requirements_history_and_payouts(session_factory, planted) -> None:
    with session_factory.begin() as session:
        disabled = session.get(Freelancer, planted["disabled"])
        add_attempt(session, freelancer_id=disabled.id, started_at=NOW - timedelta(days=3),
                    outcome="failed", reason="access_denied", method="oauth")
        add_attempt(session, freelancer_id=disabled.id, started_at=NOW - timedelta(days=2),
                    outcome="succeeded", took=timedelta(minutes=4))
        add_payout(session, freelancer=disabled, amount_minor=123_450, currency="usd",
                   created_at=NOW - timedelta(days=1))
    with session_factory() as session:
        detail = account_detail(session, operator=FINANCE, freelancer_id=planted["disabled"])
    assert detail.status == "DISABLED"
    assert detail.disabled_reason == "requirements.past_due"
    assert detail.disabled_reason_label == "Required information is past due"
    assert [(r.category, r.code, r.label) for r in detail.requirements] == [
        ("Past due", "external_account", "Bank account or debit card for payouts")]
    assert detail.capabilities == {"transfers": "inactive"}
    assert [a.outcome for a in detail.attempts] == ["succeeded", "failed"]
    assert [(p.amount, p.currency) for p in detail.payouts] == [("1,234.50", "USD")]
    assert detail.payouts_total == 1


def test_detail_of_unconnected_and_missing(session_factory, planted) -> None:
    with session_factory() as session:
        detail = account_detail(session, operator=ADMIN, freelancer_id=planted["not_connected"])
        assert detail.status == "NOT_CONNECTED" and detail.requirements == []
        assert detail.country == "FR"
        with pytest.raises(NotFoundError):
            account_detail(session, operator=ADMIN, freelancer_id=999_999)


def test_connected_but_not_mirrored_is_pending(session_factory) -> None:
    with session_factory.begin() as session:
        session.add(Freelancer(name="Zed", email="zed@example.com",
                               stripe_account_id="acct_unmirrored", connected_at=NOW))
    with session_factory() as session:
        page = list_accounts(session, operator=ADMIN,
                             filters=AccountFilter(statuses=("PENDING",)))
    assert [(r.name, r.status) for r in page.rows] == [("Zed", "PENDING")]


# ---- keyset paging (issue 7: page 1,000 costs what page 1 costs) -----------------------------


def _walk_forward(session, filters: AccountFilter, limit: int) -> list[AccountPage]:
    pages = [list_accounts(session, operator=ADMIN, filters=filters, limit=limit)]
    while pages[-1].has_next:
        pages.append(list_accounts(session, operator=ADMIN, filters=filters, limit=limit,
                                   after=pages[-1].last))
    return pages


@pytest.fixture
def crowd(session_factory, planted) -> None:
    """Names that tie (the id decides their order) among the seven planted ones."""
    with session_factory.begin() as session:
        for index, state in enumerate(["active", "disabled", "not_connected"] * 4):
            add_freelancer(session, state=state, name="B same name" if index % 2 else "Zoe",
                           email=f"crowd{index}@example.com", now=NOW)


@pytest.mark.parametrize("filters", [
    AccountFilter(), AccountFilter(statuses=("DISABLED", "NOT_CONNECTED")),
    AccountFilter(due=DueFilter.NOTHING_DUE), AccountFilter(country="US", search="e"),
])
def test_keyset_pages_are_the_offset_pages(session_factory, crowd, filters) -> None:
    with session_factory() as session:
        everything = [r["freelancer_id"] for r in export_rows(session, operator=ADMIN,
                                                              filters=filters)]
        forward = _walk_forward(session, filters, limit=3)
        backward = [list_accounts(session, operator=ADMIN, filters=filters, limit=3,
                                  from_end=True)]
        while backward[-1].has_previous:
            backward.append(list_accounts(session, operator=ADMIN, filters=filters, limit=3,
                                          before=backward[-1].first))
        by_offset = [list_accounts(session, operator=ADMIN, filters=filters, limit=3, offset=o)
                     for o in range(0, len(everything), 3)]
    assert len(everything) > 3
    ids = [[r.freelancer_id for r in p.rows] for p in forward]
    assert ids == [[r.freelancer_id for r in p.rows] for p in by_offset]
    assert [i for page in ids for i in page] == everything          # each row once, in order
    assert {p.total for p in forward} == {len(everything)}
    assert [p.has_previous for p in forward] == [False] + [True] * (len(forward) - 1)
    walked_back = [r.freelancer_id for p in reversed(backward) for r in p.rows]
    assert walked_back == everything
    assert not backward[0].has_next and backward[-1].rows[0].freelancer_id == everything[0]


def test_keyset_ties_are_broken_by_id(session_factory, crowd) -> None:
    with session_factory() as session:
        tied = list_accounts(session, operator=ADMIN, filters=AccountFilter(search="same name"),
                             limit=2)
        rest = list_accounts(session, operator=ADMIN, filters=AccountFilter(search="same name"),
                             limit=50, after=tied.last)
    ids = [r.freelancer_id for r in tied.rows + rest.rows]
    assert len(ids) == 6 and ids == sorted(ids) and tied.has_next and not rest.has_next


def test_one_starting_place_only(session_factory, planted) -> None:
    place = AccountCursor("A active", planted["active"])
    with session_factory() as session:
        with pytest.raises(ValidationError):
            list_accounts(session, operator=ADMIN, after=place, before=place)
        with pytest.raises(ValidationError):
            list_accounts(session, operator=ADMIN, after=place, offset=3)
        with pytest.raises(ValidationError):
            list_accounts(session, operator=ADMIN, from_end=True, before=place)
        with pytest.raises(PermissionDeniedError):
            list_accounts(session, operator=MANAGER, after=place)


def test_a_keyset_page_seeks_the_name_index(session_factory, planted, database_backend) -> None:
    """The plan, not a timing: the next page starts at an index search, not a walk from row 1."""
    if database_backend != "sqlite":
        pytest.skip("SQLite plans without statistics, so its plan is the same at 7 and 100,000 "
                    "rows; PostgreSQL picks by table size")
    from sqlalchemy import text

    from lib.account_queries import _after, _list_select, _ordered, _where

    statement = _ordered(_where(_list_select(), AccountFilter()).where(
        _after(AccountCursor("C", 3)))).limit(51)
    with session_factory() as session:
        sql = str(statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
        plan = " | ".join(row[-1] for row in session.execute(text("EXPLAIN QUERY PLAN " + sql)))
    assert "SEARCH freelancers USING INDEX ix_freelancers_name (name>?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
