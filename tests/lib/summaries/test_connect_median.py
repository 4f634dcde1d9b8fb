"""The weekly median time to connect read from the bucket summary stays within a bucket's
width of the exact median (and is exact when the middle bucket's values are equal)."""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from lib.connection_metrics import DateRange
from lib.connection_timing import durations_by_week, median_time_to_connect, timing_of
from lib.models import ConnectionAttempt
from lib.roles import Operator
from tests.factories_dashboard import add_attempt, add_freelancer

MANAGER = Operator.from_role_names("max", ["manager"])
START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
PERIOD = DateRange(date(2026, 11, 2), date(2026, 11, 22))


def _close(estimate: float, exact: float) -> bool:
    return abs(estimate - exact) <= max(0.1 * exact, 30.0)


@pytest.mark.slow
def test_bucketed_medians_are_within_a_bucket_of_the_exact_ones(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        freelancer_id = add_freelancer(session, state="active").id

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(0, 20 * 86_400 - 1), st.integers(0, 3 * 86_400)),
                    min_size=1, max_size=25))
    def check(attempts: list[tuple[int, int]]) -> None:
        with session_factory.begin() as session:
            session.execute(delete(ConnectionAttempt))
            for start, took in attempts:
                add_attempt(session, freelancer_id=freelancer_id, outcome="succeeded",
                            started_at=START + timedelta(seconds=start),
                            took=timedelta(seconds=took))
        with session_factory() as session:
            read = median_time_to_connect(session, operator=MANAGER, period=PERIOD)
            exact = timing_of(durations_by_week(session, period=PERIOD))
        assert read.connections == exact.connections == len(attempts)
        assert read.median_seconds is not None and exact.median_seconds is not None
        assert _close(read.median_seconds, exact.median_seconds)
        assert [(w.week, w.connections) for w in read.weeks] == [
            (w.week, w.connections) for w in exact.weeks]
        for got, want in zip(read.weeks, exact.weeks, strict=True):
            assert _close(got.median_seconds, want.median_seconds)

    check()


def test_equal_durations_give_the_exact_median(session_factory) -> None:
    with session_factory.begin() as session:
        freelancer_id = add_freelancer(session, state="active").id
        for minute in range(7):
            add_attempt(session, freelancer_id=freelancer_id, outcome="succeeded",
                        started_at=START + timedelta(minutes=minute),
                        took=timedelta(minutes=20))
    with session_factory() as session:
        timing = median_time_to_connect(session, operator=MANAGER, period=PERIOD)
    assert timing.median_seconds == 1_200 and statistics.median([1_200] * 7) == 1_200
