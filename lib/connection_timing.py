"""How long freelancers take to connect: each succeeded attempt's duration and the weekly median.

*Time to connect* is ``finished_at - started_at`` of a succeeded attempt (link issued →
connection made), as in ``lib.connection_metrics``, whose fixed buckets draw the distribution.
The page's median per ISO week (Monday, UTC, of the attempt's start) is read from a summary of
10 %-wide duration buckets (issue 22, :func:`median_time_to_connect`); :func:`durations_by_week`
still reads every duration, exactly, for the finance reports. A week with
fewer than :data:`SMALL_SAMPLE` connections is flagged so the chart can say so.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Result, select
from sqlalchemy.orm import Session

from lib.connection_metrics import DateRange, Grain, date_bucket
from lib.models import AttemptOutcome, ConnectionAttempt
from lib.roles import Action, Operator, authorize
from lib.summaries.keys import day_of
from lib.summaries.store import Ask, SummaryRow, read_many

#: Fewer decided attempts (or connections) than this in a bucket: a rate or median that moves a
#: lot with one more freelancer. Charts mark such points as small samples.
SMALL_SAMPLE = 10


@dataclass(frozen=True, slots=True)
class WeeklyMedian:
    week: date
    connections: int
    median_seconds: float

    @property
    def median_hours(self) -> float:
        return round(self.median_seconds / 3_600, 2)

    @property
    def small_sample(self) -> bool:
        return self.connections < SMALL_SAMPLE


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def durations_by_week(session: Session, *, period: DateRange) -> list[tuple[date, float]]:
    """(week, seconds) of every succeeded attempt started in ``period`` (no role check: callers
    authorize: the metrics page and the finance reports)."""
    week = date_bucket(ConnectionAttempt.started_at, Grain.WEEK,
                       session.get_bind().dialect.name).label("week")
    # The week's type is the dialect's (see _as_date); finished_at is set (the WHERE says so).
    rows: Result[object, datetime, datetime] = session.execute(
        select(week, ConnectionAttempt.started_at, ConnectionAttempt.finished_at)
        .where(ConnectionAttempt.outcome == AttemptOutcome.SUCCEEDED.value,
               ConnectionAttempt.started_at >= period.start,
               ConnectionAttempt.started_at < period.end,
               ConnectionAttempt.finished_at.is_not(None))
    )
    return [(_as_date(w), max(0.0, (finished - started).total_seconds()))
            for w, started, finished in rows]


def weekly_medians(durations: Iterable[tuple[date, float]]) -> list[WeeklyMedian]:
    """The median duration of each week that had connections, oldest first."""
    per_week: dict[date, list[float]] = defaultdict(list)
    for week, seconds in durations:
        per_week[week].append(seconds)
    return [WeeklyMedian(week, len(values), float(statistics.median(values)))
            for week, values in sorted(per_week.items())]


@dataclass(frozen=True, slots=True)
class ConnectTiming:
    weeks: list[WeeklyMedian]
    connections: int
    median_seconds: float | None

    @property
    def median_hours(self) -> float | None:
        return None if self.median_seconds is None else round(self.median_seconds / 3_600, 2)


def timing_of(durations: list[tuple[date, float]]) -> ConnectTiming:
    """Weekly medians and the median of the whole range."""
    seconds = [s for _, s in durations]
    return ConnectTiming(weekly_medians(durations), len(seconds),
                         float(statistics.median(seconds)) if seconds else None)


def _median_of(buckets: dict[int, tuple[int, int]]) -> float | None:
    """The median from ``bucket -> (connections, seconds added up)``: the mean of the bucket
    holding the middle connection (of the two middle ones, averaged, for an even count)."""
    total = sum(n for n, _ in buckets.values())
    if not total:
        return None
    ranks = {(total - 1) // 2, total // 2}
    found: list[float] = []
    seen = 0
    for index in sorted(buckets):
        n, seconds = buckets[index]
        for rank in sorted(ranks):
            if seen <= rank < seen + n:
                found.append(seconds / n)
        seen += n
    return float(statistics.fmean(found))


def median_time_to_connect(
    session: Session, *, operator: Operator, period: DateRange,
) -> ConnectTiming:
    """The Connection metrics page's median time to connect, per week and over the range.

    Read from the ``connect_seconds`` summary (issue 22): per day, connections in 10 %-wide
    duration buckets with their seconds added up, added up per week in the database, so a few
    hundred rows per week of the range however many connections. The median is the mean of the bucket holding the middle connection: within
    about 5 % of the exact median (:func:`durations_by_week` gives exact durations, for the
    finance reports).
    """
    authorize(operator, Action.VIEW_METRICS, session=session)
    return timing_from(read_many(session, [timing_ask(period)])["timing"])


def timing_ask(period: DateRange) -> Ask:
    """The summary read behind :func:`median_time_to_connect` (labelled ``timing``)."""
    return Ask("timing", "connect_seconds", group=("week", "k1"),
               first_day=day_of(period.first), before_day=day_of(period.last + timedelta(days=1)))


def timing_from(rows: list[SummaryRow]) -> ConnectTiming:
    weeks: dict[date, dict[int, tuple[int, int]]] = defaultdict(dict)
    whole: dict[int, tuple[int, int]] = {}
    for row in rows:
        week = date.fromisoformat(row.day)          # its Monday
        index = int(row.k1)
        for target in (weeks[week], whole):
            n, seconds = target.get(index, (0, 0))
            target[index] = (n + row.n, seconds + row.amount)
    medians = []
    for week, buckets in sorted(weeks.items()):
        median = _median_of(buckets)
        if median is not None:
            medians.append(WeeklyMedian(week, sum(n for n, _ in buckets.values()), median))
    return ConnectTiming(medians, sum(n for n, _ in whole.values()), _median_of(whole))
