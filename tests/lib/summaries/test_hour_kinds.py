"""The hourly kinds: ``attempt_hours`` (connection attempts per start hour × outcome, migration
0020), ``connected_hours`` and ``deadline_hours`` (migration 0021).

Its triggers keep it on every write like the other kinds (the state machine and the Overview's
exactness test read it); here, the migration that adds it to a database that already holds
attempts, and the hour text both backends write.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from lib.migrate import downgrade, upgrade
from lib.models import ConnectionAttempt, Freelancer, SummaryCount
from lib.summaries import maintenance
from lib.summaries.keys import hour_of
from lib.summaries.store import read
from tests.factories_dashboard import add_attempt, add_freelancer

NOW = datetime(2026, 12, 6, 9, 15, tzinfo=UTC)
STARTS = (NOW, NOW - timedelta(minutes=20), NOW.replace(minute=0), NOW - timedelta(hours=1),
          datetime(2026, 12, 5, 23, 59, 59, 999_999, tzinfo=UTC))


def _plant(session_factory: sessionmaker[Session], email: str = "ada@example.com",
           state: str = "active") -> None:
    with session_factory.begin() as session:
        freelancer = add_freelancer(session, state=state, now=NOW, email=email)
        for number, started in enumerate(STARTS):
            add_attempt(session, freelancer_id=freelancer.id, started_at=started,
                        outcome=("succeeded", "failed")[number % 2])


def _hours(session_factory: sessionmaker[Session]) -> dict[tuple[str, str], int]:
    with session_factory() as session:
        return {(row.day, row.k1): row.n for row in read(session, "attempt_hours")}


def _expected(session_factory: sessionmaker[Session]) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    with session_factory() as session:
        for attempt in session.scalars(select(ConnectionAttempt)):
            key = (hour_of(attempt.started_at), attempt.outcome)
            found[key] = found.get(key, 0) + 1
    return found


def test_hours_are_kept_on_write_in_the_hour_text_of_python(session_factory) -> None:
    _plant(session_factory)
    assert _hours(session_factory) == _expected(session_factory) == {
        ("2026120609", "succeeded"): 2, ("2026120608", "failed"): 2,
        ("2026120523", "succeeded"): 1}
    with session_factory.begin() as session:
        first = session.scalars(select(ConnectionAttempt).order_by(ConnectionAttempt.id)).first()
        assert first is not None
        first.started_at = NOW - timedelta(days=2)          # moves to another hour
        first.outcome = "abandoned"
    assert _hours(session_factory) == _expected(session_factory)
    with session_factory.begin() as session:
        maintenance.compact(session)
        assert maintenance.check(session).ok


def test_the_migration_counts_attempts_written_before_it(engine: Engine,
                                                          session_factory) -> None:
    downgrade(engine, "0019")
    try:
        _plant(session_factory)            # written with no attempt_hours trigger yet
        with session_factory() as session:
            assert not session.scalars(select(SummaryCount).where(
                SummaryCount.kind == "attempt_hours")).all()
    finally:
        upgrade(engine)
    assert _hours(session_factory) == _expected(session_factory) != {}
    with session_factory.begin() as session:
        assert maintenance.check(session).ok
    _plant(session_factory, "bo@example.com")        # and kept from then on
    assert _hours(session_factory) == _expected(session_factory)
    downgrade(engine, "0019")
    try:
        with session_factory() as session:
            assert not session.scalars(select(SummaryCount).where(
                SummaryCount.kind == "attempt_hours")).all()
    finally:
        upgrade(engine)


def test_migration_0021_counts_connections_and_deadlines_by_hour(engine: Engine,
                                                                 session_factory) -> None:
    """``connected_hours`` and ``deadline_hours`` (the freelancer's side of it included) are
    counted for rows written before them, and kept from then on, equal to a recount."""
    downgrade(engine, "0020")
    try:
        _plant(session_factory, state="restricted")            # it has a deadline
    finally:
        upgrade(engine)
    with session_factory.begin() as session:
        maintenance.compact(session)
        assert maintenance.check(session).ok
        kinds = {row.kind for row in session.scalars(select(SummaryCount))}
    assert {"connected_hours", "deadline_hours"} <= kinds
    _plant(session_factory, "bo@example.com", state="restricted")
    with session_factory.begin() as session:
        freelancer = session.scalars(select(Freelancer).order_by(Freelancer.id)).first()
        assert freelancer is not None
        freelancer.stripe_account_id = None          # disconnected: both kinds drop it
    with session_factory.begin() as session:
        maintenance.compact(session)
        assert maintenance.check(session).ok
    downgrade(engine, "0020")
    try:
        with session_factory() as session:
            assert not session.scalars(select(SummaryCount).where(SummaryCount.kind.in_(
                ("connected_hours", "deadline_hours")))).all()
    finally:
        upgrade(engine)


def test_postgresql_plans_with_the_added_kind_counted(engine: Engine, session_factory) -> None:
    """add_kind and rebuild leave PostgreSQL's statistics knowing the kinds they wrote (stale
    statistics planned a read of a few hours as a scan of the whole kind)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's planner keeps no statistics for these reads")
    _plant(session_factory)
    with session_factory.begin() as session:
        maintenance.add_kind(session, "attempt_hours")
        kinds = session.execute(text(
            "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'summary_counts' "
            "AND attname = 'kind'")).scalar_one()
    assert "attempt_hours" in kinds
