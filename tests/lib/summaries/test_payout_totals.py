"""The payouts ledger's total and per-currency totals from the summary equal a count over the
rows, for any status, currency and date range (ends drawn mid-day, at midnight, or open), and so
does what succeeded reversals took back from each cell's payouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from lib.models import Freelancer, Payout, PayoutReversal, PayoutStatus, ReversalStatus
from lib.payouts.queries import PayoutFilter, _where, list_payouts, totals_by_currency
from lib.roles import Operator
from tests.factories_dashboard import add_freelancer, add_payout

FINANCE = Operator.from_role_names("fin", ["finance"])
BASE = datetime(2026, 11, 10, tzinfo=UTC)
MOMENTS = st.builds(lambda d, s: BASE + timedelta(days=d, seconds=s),
                    st.integers(0, 6), st.sampled_from([-1, 0, 1, 40_000, 86_399]))


@pytest.mark.slow
def test_ledger_totals_from_the_summary_equal_a_count(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        freelancer_id = add_freelancer(session, state="active").id

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(rows=st.lists(st.tuples(MOMENTS, st.sampled_from(["usd", "jpy"]),
                                   st.sampled_from([s.value for s in PayoutStatus]),
                                   st.integers(1, 10**7),
                                   st.lists(st.tuples(
                                       st.sampled_from([s.value for s in ReversalStatus]),
                                       st.integers(1, 10**6)), max_size=2)), max_size=12),
           status=st.none() | st.sampled_from(["paid", "failed"]),
           currency=st.none() | st.sampled_from(["usd", "jpy"]),
           start=st.none() | MOMENTS, end=st.none() | MOMENTS)
    def check(rows: list[tuple[datetime, str, str, int, list[tuple[str, int]]]],
              status: str | None,
              currency: str | None, start: datetime | None, end: datetime | None) -> None:
        with session_factory.begin() as session:
            session.execute(delete(PayoutReversal))
            session.execute(delete(Payout))
            freelancer = session.get_one(Freelancer, freelancer_id)
            for at, cur, state, amount, reversals in rows:
                payout = add_payout(session, freelancer=freelancer, amount_minor=amount,
                                    currency=cur, status=state, created_at=at)
                session.flush()
                for number, (reversal_status, taken) in enumerate(reversals):
                    session.add(PayoutReversal(
                        payout_id=payout.id, amount_minor=taken, reason="test",
                        status=reversal_status, requested_by="test",
                        idempotency_key=f"rev-{payout.id}-{number}"))
        filters = PayoutFilter(status=status, currency=currency, created_from=start,
                               created_to=end)
        with session_factory() as session:
            page = list_payouts(session, operator=FINANCE, filters=filters)
            cells = {(c.currency, c.status): (c.count, c.amount_minor, c.reversed_minor)
                     for c in totals_by_currency(session, operator=FINANCE, filters=filters)}
            exact = session.scalar(_where(select(func.count()).select_from(Payout), filters))
            taken_back = {(c, s): int(a) for c, s, a in session.execute(_where(
                select(Payout.currency, Payout.status, func.sum(PayoutReversal.amount_minor))
                .join(PayoutReversal, PayoutReversal.payout_id == Payout.id)
                .where(PayoutReversal.status == ReversalStatus.SUCCEEDED.value), filters)
                .group_by(Payout.currency, Payout.status))}
            expected = {(c, s): (int(n), int(a), taken_back.get((c, s), 0))
                        for c, s, n, a in session.execute(_where(
                            select(Payout.currency, Payout.status, func.count(),
                                   func.sum(Payout.amount_minor)), filters)
                            .group_by(Payout.currency, Payout.status))}
        assert page.total == exact
        assert cells == expected

    check()
