"""The Reconciliation page's rows for a person, paged in SQL (issue 22).

The filter, the reason and the open-proposal check run in SQL, so a page is read with
``LIMIT``/``OFFSET``. These tests plant every combination that decides whether a row waits for
a person, and compare each page, the total and the reasons with the row-at-a-time rule
(``_why``) applied to every row.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.db import utcnow
from lib.errors import PermissionDeniedError, ValidationError
from lib.models import Payout, PayoutReversal, SettlementDecision
from lib.payouts import decisions
from lib.payouts.decisions import (
    PAYOUT,
    REVERSAL,
    WHY_KEY_FORGOTTEN,
    WHY_SAVED_500,
    _why,
    awaiting_page,
)
from lib.payouts.execution import SAVED_SERVER_ERROR, STALE_SUBMITTED_AFTER
from lib.roles import Operator
from tests.lib.payouts.helpers import FINANCE, add_freelancer

#: (status, minutes since the last update, hours since first sent, error code, proposed)
_COMBINATIONS = list(itertools.product(
    ["unknown", "submitted", "paid", "pending"], [1, 30], [1, 48],
    [None, SAVED_SERVER_ERROR, "card_declined"], [False, True]))


def _plant(session: Session) -> None:
    """Each combination once as a payout and once as a reversal of a paid payout."""
    now = utcnow()
    freelancer = add_freelancer(session)
    keys = itertools.count()

    def payout(**fields: object) -> Payout:
        row = Payout(freelancer_id=freelancer.id, stripe_account_id=freelancer.stripe_account_id,
                     amount_minor=1_000 + next(keys), currency="usd", requested_by="alice",
                     idempotency_key=f"awaiting-{next(keys)}", **fields)
        session.add(row)
        session.flush()
        return row

    for status, idle, age, error, proposed in _COMBINATIONS:
        sent = now - timedelta(hours=age)
        row = payout(status=status, error_code=error, created_at=sent - timedelta(minutes=1),
                     submitted_at=sent if status != "pending" else None,
                     updated_at=now - timedelta(minutes=idle))
        parent = payout(status="paid", created_at=sent, updated_at=sent)
        reversal = PayoutReversal(payout_id=parent.id, amount_minor=100, reason="test",
                                  status=status if status != "paid" else "succeeded",
                                  idempotency_key=f"awaiting-rev-{next(keys)}",
                                  requested_by="alice", error_code=error,
                                  created_at=sent - timedelta(minutes=1),
                                  submitted_at=sent if status != "pending" else None,
                                  updated_at=now - timedelta(minutes=idle))
        session.add(reversal)
        session.flush()
        if proposed:
            for subject, subject_id in ((PAYOUT, row.id), (REVERSAL, reversal.id)):
                session.add(SettlementDecision(subject=subject, subject_id=subject_id,
                                               payout_id=row.id if subject == PAYOUT
                                               else parent.id, outcome="not_paid",
                                               reason="checked", proposed_by="alice"))
    session.flush()


def _expected(session: Session) -> list[tuple[str, int, str]]:
    """The rule applied row by row: unsettled and idle, a reason, no open proposal."""
    now = utcnow()
    proposed = {(d.subject, d.subject_id) for d in session.scalars(
        select(SettlementDecision).where(SettlementDecision.status == "open"))}
    rows: list[tuple[str, Payout | PayoutReversal]] = [
        *((PAYOUT, p) for p in session.scalars(select(Payout).order_by(Payout.id))),
        *((REVERSAL, r) for r in session.scalars(
            select(PayoutReversal).order_by(PayoutReversal.id)))]
    found = []
    for subject, row in rows:
        idle = row.status == "unknown" or (
            row.status == "submitted" and row.updated_at < now - STALE_SUBMITTED_AFTER)
        why = _why(row, now) if idle else None
        if why is not None and (subject, row.id) not in proposed:
            found.append((subject, row.id, why))
    return found


def test_every_page_is_the_rule_applied_row_by_row(session_factory) -> None:
    with session_factory.begin() as session:
        _plant(session)
    with session_factory() as session:
        expected = _expected(session)
        # Both kinds, both reasons, and rows the rule leaves out, or the test proves little.
        assert {s for s, _, _ in expected} == {PAYOUT, REVERSAL}
        assert {w for _, _, w in expected} == {WHY_KEY_FORGOTTEN, WHY_SAVED_500}
        assert 0 < len(expected) < 2 * len(_COMBINATIONS)
        seen = []
        for offset in range(0, len(expected) + 7, 7):
            page = awaiting_page(session, operator=FINANCE, limit=7, offset=offset)
            assert (page.total, page.total_is_lower_bound) == (len(expected), False)
            seen.extend(page.rows)
    assert [(r.subject, r.subject_id, r.why) for r in seen] == expected
    for row in seen:
        assert row.first_sent.tzinfo is not None and row.currency == "usd"
        assert row.destination and row.destination.startswith("acct_")


def test_the_count_stops_at_its_cap(session_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    with session_factory.begin() as session:
        _plant(session)
    with session_factory() as session:
        everything = awaiting_page(session, operator=FINANCE, limit=500).total
        monkeypatch.setattr(decisions, "AWAITING_COUNT_CAP", everything - 1)
        page = awaiting_page(session, operator=FINANCE, limit=5)
    assert (page.total, page.total_is_lower_bound, len(page.rows)) == (everything - 1, True, 5)


def test_an_empty_ledger_has_an_empty_first_page(session_factory) -> None:
    with session_factory() as session:
        page = awaiting_page(session, operator=FINANCE, limit=50)
    assert (page.rows, page.total, page.total_is_lower_bound) == ([], 0, False)


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (501, 0), (50, -1)])
def test_a_page_outside_the_rules_is_refused(session_factory, limit: int, offset: int) -> None:
    with session_factory() as session, pytest.raises(ValidationError, match="Page size"):
        awaiting_page(session, operator=FINANCE, limit=limit, offset=offset)


def test_it_needs_the_right_to_view_payouts(session_factory) -> None:
    nobody = Operator("nina", frozenset())
    with session_factory() as session, pytest.raises(PermissionDeniedError):
        awaiting_page(session, operator=nobody, limit=50)


def test_retry_choices_offer_exactly_the_unknown_rows_execute_payout_would_retry(
        session_factory) -> None:
    """The Payouts page's retry list: unknown, within the key window, no saved 500; newest
    first. Every other unknown row waits for a person (and is on this module's page)."""
    from lib.payouts.execution import IDEMPOTENCY_WINDOW
    from lib.payouts.queries import retry_choices

    with session_factory.begin() as session:
        _plant(session)
    now = utcnow()
    with session_factory() as session:
        unknown = list(session.scalars(select(Payout).where(Payout.status == "unknown")))
        may = [p for p in unknown
               if (p.submitted_at or p.created_at) >= now - IDEMPOTENCY_WINDOW
               and p.error_code != SAVED_SERVER_ERROR]
        found = retry_choices(session, operator=FINANCE, limit=3)
    newest = sorted(may, key=lambda p: (p.created_at, p.id), reverse=True)[:3]
    assert (found.unknown, found.retryable) == (len(unknown), len(may))
    assert 0 < len(may) < len(unknown)
    assert [r.id for r in found.rows] == [p.id for p in newest]
