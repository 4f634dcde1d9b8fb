"""How long freelancers take to connect: each succeeded attempt's duration and the weekly median.

*Time to connect* is ``finished_at - started_at`` of a succeeded attempt (link issued →
connection made), as in ``lib.connection_metrics``, whose fixed buckets draw the distribution.
The median per ISO week (Monday, UTC, of the attempt's start) is exact: the durations of the
range are read from the ``(outcome, started_at, …, finished_at)`` covering index, two numbers
per attempt, and the median is taken in Python (SQLite has no percentile function). A week with
fewer than :data:`SMALL_SAMPLE` connections is flagged so the chart can say so.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.connection_metrics import DateRange, Grain, date_bucket
from lib.models import AttemptOutcome, ConnectionAttempt
from lib.roles import Action, Operator, authorize

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
    rows = session.execute(
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


def median_time_to_connect(
    session: Session, *, operator: Operator, period: DateRange,
) -> ConnectTiming:
    """The Connection metrics page's median time to connect, per week and over the range."""
    authorize(operator, Action.VIEW_METRICS, session=session)
    return timing_of(durations_by_week(session, period=period))
