"""``funnel_freelancers`` follows each write that moves a freelancer through the funnel, by
trigger, in the write's transaction (issue 22), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from lib.models import ConnectedAccount, ConnectionAttempt, Freelancer, FunnelFreelancer, Payout
from lib.summaries import maintenance
from tests.factories_dashboard import add_attempt, add_freelancer, add_payout

MON = datetime(2026, 11, 9, 23, 59, 59, tzinfo=UTC)


def _row(factory: sessionmaker[Session],
         freelancer_id: int) -> tuple[str, str, str, int, int] | None:
    with factory() as session:
        row = session.get(FunnelFreelancer, freelancer_id)
        if row is None:
            return None
        return row.issued_day, row.returned_day, row.connected_day, row.verified, row.paid


def _check(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        result = maintenance.check(session)
    assert result.ok, [d.to_dict() for d in result.differences[:10]]


def test_the_row_follows_attempts_accounts_payouts_and_relinks(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        person = add_freelancer(session, state="active", now=MON)
        other = add_freelancer(session, state="active", now=MON)
        person_id, account_id = person.id, person.stripe_account_id
    assert _row(session_factory, person_id) is None

    with session_factory.begin() as session:
        first = add_attempt(session, freelancer_id=person_id, started_at=MON, outcome="pending")
        session.flush()
        first_id = first.id
    assert _row(session_factory, person_id) == ("2026-11-09", "", "", 1, 0)

    with session_factory.begin() as session:
        add_attempt(session, freelancer_id=person_id, started_at=MON + timedelta(seconds=2),
                    outcome="failed", reason="access_denied")
    assert _row(session_factory, person_id) == ("2026-11-10", "2026-11-10", "", 1, 0)

    with session_factory.begin() as session:
        session.execute(update(ConnectionAttempt).where(ConnectionAttempt.id == first_id)
                        .values(outcome="succeeded"))
    assert _row(session_factory, person_id) == ("2026-11-10", "2026-11-10", "2026-11-09", 1, 0)

    with session_factory.begin() as session:
        payout = add_payout(session, freelancer=session.get_one(Freelancer, person_id),
                            status="pending", created_at=MON)
        session.flush()
        payout_id = payout.id
    assert _row(session_factory, person_id) == ("2026-11-10", "2026-11-10", "2026-11-09", 1, 0)
    with session_factory.begin() as session:
        session.execute(update(Payout).where(Payout.id == payout_id).values(status="paid"))
    assert _row(session_factory, person_id) == ("2026-11-10", "2026-11-10", "2026-11-09", 1, 1)

    with session_factory.begin() as session:
        session.execute(update(ConnectedAccount).where(ConnectedAccount.stripe_id == account_id)
                        .values(currently_due_count=2))
    assert _row(session_factory, person_id) == ("2026-11-10", "2026-11-10", "2026-11-09", 0, 1)

    # The freelancer moves to the other's (payable) account: verified again.
    with session_factory.begin() as session:
        other_account = session.get_one(Freelancer, other.id).stripe_account_id
        session.execute(update(Freelancer).where(Freelancer.id == other.id)
                        .values(stripe_account_id=None))
        session.execute(update(Freelancer).where(Freelancer.id == person_id)
                        .values(stripe_account_id=other_account))
    assert _row(session_factory, person_id) == ("2026-11-10", "2026-11-10", "2026-11-09", 1, 1)

    with session_factory.begin() as session:
        session.execute(update(Payout).where(Payout.id == payout_id).values(status="reversed"))
        session.execute(delete(ConnectionAttempt).where(ConnectionAttempt.id == first_id))
    assert _row(session_factory, person_id) == ("2026-11-10", "2026-11-10", "", 1, 0)
    _check(session_factory)

    with session_factory.begin() as session:
        session.execute(delete(ConnectionAttempt)
                        .where(ConnectionAttempt.freelancer_id == person_id))
    assert _row(session_factory, person_id) is None
    _check(session_factory)


def test_rebuild_repairs_a_row_written_behind_the_triggers_back(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        person = add_freelancer(session, state="active", now=MON)
        add_attempt(session, freelancer_id=person.id, started_at=MON, outcome="succeeded",
                    took=timedelta(minutes=3))
        person_id = person.id
    with session_factory.begin() as session:
        session.execute(update(FunnelFreelancer).values(connected_day="2020-01-01"))
    with session_factory() as session:
        assert not maintenance.check(session).ok
    with session_factory.begin() as session:
        maintenance.rebuild(session)
    assert _row(session_factory, person_id) == ("2026-11-09", "2026-11-09", "2026-11-09", 1, 0)
    _check(session_factory)
    with session_factory() as session:
        assert session.scalars(select(FunnelFreelancer.freelancer_id)).all() == [person_id]
