"""The summaries' SQL description agrees with the Python definitions it copies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from lib.connection_metrics import DURATION_BUCKETS
from lib.summaries.keys import day_of, hour_of
from lib.summaries.ranges import HOUR, cheapest, pieces, split
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


def _hour_of_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H")


@given(start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 3, 1),
                          timezones=st.just(UTC)),
       length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=70)),
       ahead=st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2)),
       stamps=st.lists(st.datetimes(min_value=datetime(2025, 12, 31),
                                    max_value=datetime(2026, 5, 20), timezones=st.just(UTC)),
                       max_size=40))
def test_pieces_add_up_to_a_count_over_the_range(start: datetime, length: timedelta,
                                                 ahead: timedelta | None,
                                                 stamps: list[datetime]) -> None:
    """Whole days (by their day key), whole hours (by their hour key) and the rows of the short
    ranges, each signed, add up to the rows inside ``[start, end)``, wherever ``now`` is; rows
    near the range's ends are planted too."""
    end = start + length
    now = None if ahead is None else end - timedelta(hours=1) + ahead
    stamps = stamps + [mark + delta for mark in (start, end)
                       for delta in (-HOUR / 2, -timedelta(seconds=1), timedelta(0),
                                     timedelta(seconds=1), HOUR / 2)]
    parts = pieces(start, end, now=now)
    counted = sum(sign * sum(first <= day_of(t) < before for t in stamps)
                  for sign, first, before in parts.days)
    counted += sum(sign * sum(first <= _hour_of_text(t) < before for t in stamps)
                   for sign, first, before in parts.hours)
    counted += sum(sign * sum(s <= t < e for t in stamps) for sign, s, e in parts.rows)
    assert counted == sum(start <= t < end for t in stamps)


@given(start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 3, 1),
                          timezones=st.just(UTC)),
       days=st.integers(1, 60))
def test_pieces_count_at_most_half_an_hour_of_rows_at_each_end(start: datetime,
                                                                 days: int) -> None:
    """What the Overview's windows cost in rows no longer depends on the time of day: at most
    half an hour of rows stamped before ``now`` at each end (a piece after ``now`` holds none
    yet)."""
    end = start + timedelta(days=days)
    parts = pieces(start, end, now=end)
    past = [max(timedelta(0), min(e, end) - s) for _, s, e in parts.rows]
    assert all(length <= HOUR / 2 for length in past)
    assert sum(past, timedelta(0)) <= HOUR
    # Whole days and hours only as far as the range reaches (a taken-back hour or day is
    # within one unit of it).
    assert all(before <= day_of(end + timedelta(days=1)) for _, _, before in parts.days)


def test_hour_keys_are_the_utc_hour_in_ten_sortable_characters() -> None:
    from zoneinfo import ZoneInfo

    moment = datetime(2026, 12, 4, 7, 59, tzinfo=UTC)
    assert hour_of(moment) == "2026120407"
    assert hour_of(datetime(2026, 12, 4, 23, 30, tzinfo=ZoneInfo("America/New_York"))) \
        == "2026120504"
    assert hour_of(moment) < hour_of(moment + HOUR) < hour_of(moment + timedelta(days=40))
    parts = split(moment, moment + timedelta(hours=3), unit=HOUR)
    assert (parts.first_day, parts.before_day) == ("2026120408", "2026120410")
    assert parts.edges == [(moment, datetime(2026, 12, 4, 8, tzinfo=UTC)),
                           (datetime(2026, 12, 4, 10, tzinfo=UTC), moment + timedelta(hours=3))]
