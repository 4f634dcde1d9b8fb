"""The summaries' SQL description agrees with the Python definitions it copies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lib.connection_metrics import DURATION_BUCKETS
from lib.summaries.keys import day_of
from lib.summaries.ranges import cheapest, split
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


def test_cheapest_reads_the_shorter_piece_of_each_partial_day() -> None:
    """Ahead of now (deadlines): the shorter piece of the day. Behind it (rows stamped when they
    happen): only the time before now counts, so today's rest is free."""
    now = datetime(2026, 12, 4, 6, 30, tzinfo=UTC)
    ahead = cheapest(split(now, now + timedelta(days=7)))
    # Today from 06:30 is 17.5 h: its whole day less 00:00–06:30; the last day's 6.5 h as is.
    assert ahead.edges == [(datetime(2026, 12, 11, tzinfo=UTC), now + timedelta(days=7))]
    assert ahead.taken_back == [("2026-12-04", datetime(2026, 12, 4, tzinfo=UTC), now)]
    behind = cheapest(split(now - timedelta(days=30), now), now=now)
    assert behind.edges == []
    assert behind.taken_back == [
        ("2026-11-04", datetime(2026, 11, 4, tzinfo=UTC), now - timedelta(days=30)),
        ("2026-12-04", now, datetime(2026, 12, 5, tzinfo=UTC))]


def test_day_of_is_the_utc_date() -> None:
    from zoneinfo import ZoneInfo

    late = datetime(2026, 12, 4, 23, 30, tzinfo=ZoneInfo("America/New_York"))
    assert day_of(late) == "2026-12-05" and day_of(None) == ""
