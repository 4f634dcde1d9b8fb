"""The summaries' SQL description agrees with the Python definitions it copies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lib.connection_metrics import DURATION_BUCKETS
from lib.summaries.keys import day_of
from lib.summaries.ranges import split
from lib.summaries.spec import CONNECT_TIME_BOUNDS


def test_connect_time_buckets_are_the_pages_buckets() -> None:
    assert CONNECT_TIME_BOUNDS == tuple(int(limit) for _, limit in DURATION_BUCKETS
                                        if limit is not None)
    assert len(DURATION_BUCKETS) == len(CONNECT_TIME_BOUNDS) + 1


def test_split_whole_days_and_partial_ends() -> None:
    now = datetime(2026, 12, 4, 22, 15, tzinfo=UTC)
    parts = split(now - timedelta(days=30), now)
    assert (parts.first_day, parts.before_day) == ("2026-11-05", "2026-12-04")
    assert parts.edges == [(now - timedelta(days=30), datetime(2026, 11, 5, tzinfo=UTC)),
                           (datetime(2026, 12, 4, tzinfo=UTC), now)]
    midnight = datetime(2026, 12, 1, tzinfo=UTC)
    assert split(midnight, midnight + timedelta(days=2)).edges == []
    inside = split(now, now + timedelta(hours=1))
    assert not inside.has_days and inside.edges == [(now, now + timedelta(hours=1))]
    assert split(now, now).edges == []


def test_day_of_is_the_utc_date() -> None:
    from zoneinfo import ZoneInfo

    late = datetime(2026, 12, 4, 23, 30, tzinfo=ZoneInfo("America/New_York"))
    assert day_of(late) == "2026-12-05" and day_of(None) == ""
