"""Connection metrics for a date range: success rate over time, the funnel, failure reasons and
time to connect. Everything reads the per-day summaries kept on write (``lib.summaries``, issue
22: a few rows per day, whatever the volume). The funnel counts distinct freelancers, which
per-day counts of attempts cannot give: for a range ending today it reads per-day counts of each
freelancer's newest attempt (:mod:`lib.summaries.funnel`); for a range that ends in the past,
one ``GROUP BY`` over the range's attempts (indexed on ``started_at``).

Attempts belong to the day (or ISO week, Monday first) they *started*, in UTC. Definitions:

- *decided*: succeeded, failed or abandoned; *success rate* = succeeded / decided (pending
  attempts have no outcome yet).
- *funnel*, counted in distinct freelancers with an attempt started in the range, each stage a
  subset of the one before: links issued → returned (came back from Stripe: ``returned_at`` set,
  or the attempt succeeded or failed at the callback; abandoned links never came back) →
  connected (an attempt succeeded) → verified (the current account is payable: the
  ``transfers`` capability active, payouts enabled, details submitted and nothing currently or
  past due, as :func:`lib.account_status.is_verified`; never ``charges_enabled``, which a
  ``recipient`` account never has) → first payout (and at least one ``paid`` payout).
- *time to connect*: ``finished_at - started_at`` of succeeded attempts, in fixed buckets.

Date bucketing differs by database (``date()``/``strftime`` modifiers on SQLite, ``date_trunc``
on PostgreSQL); :func:`date_bucket` is the one place that knows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from lib.errors import ValidationError
from lib.models import (
    AttemptOutcome,
    ConnectedAccount,
    ConnectionAttempt,
    Freelancer,
    Payout,
    PayoutStatus,
)
from lib.roles import Action, Operator, authorize
from lib.summaries.keys import day_of
from lib.summaries.store import Ask, SummaryRow, read, read_many

#: The longest range the page may ask for (two years of days is still a small result).
MAX_RANGE = timedelta(days=800)
FUNNEL_STAGES = ("Links issued", "Returned", "Connected", "Verified", "First payout")
#: Upper bounds (seconds) of the time-to-connect buckets; the last bucket is open.
DURATION_BUCKETS: tuple[tuple[str, float | None], ...] = (
    ("< 5 min", 5 * 60), ("5–15 min", 15 * 60), ("15–60 min", 3_600), ("1–6 h", 6 * 3_600),
    ("6–24 h", 86_400), ("1–7 days", 7 * 86_400), ("> 7 days", None),
)
_DECIDED = (AttemptOutcome.SUCCEEDED.value, AttemptOutcome.FAILED.value,
            AttemptOutcome.ABANDONED.value)


class Grain(enum.StrEnum):
    DAY = "day"
    WEEK = "week"


def date_bucket(column: Any, grain: Grain, dialect: str) -> ColumnElement[Any]:
    """The UTC day, or the Monday of the ISO week, of a timestamp column, in SQL."""
    if dialect == "postgresql":
        return func.date_trunc(grain.value, func.timezone("UTC", column))
    if grain is Grain.DAY:
        return func.date(column)
    # SQLite: 'weekday 0' moves forward to Sunday (or stays), '-6 days' lands on Monday.
    return func.date(column, "weekday 0", "-6 days")


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


@dataclass(frozen=True, slots=True)
class DateRange:
    """Whole UTC days, both ends included."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValidationError("The end of the date range is before its start.")
        if self.last - self.first > MAX_RANGE:
            raise ValidationError(f"Choose a range of at most {MAX_RANGE.days} days.")

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), tzinfo=UTC)

    @classmethod
    def last_days(cls, days: int, *, today: date | None = None) -> DateRange:
        last = today or datetime.now(UTC).date()
        return cls(last - timedelta(days=days - 1), last)


def _in_range(period: DateRange) -> ColumnElement[bool]:
    return and_(ConnectionAttempt.started_at >= period.start,
                ConnectionAttempt.started_at < period.end)


def _count_when(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


# ---- success rate over time ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RatePoint:
    bucket: date
    method: str
    attempts: int
    succeeded: int
    failed: int
    abandoned: int
    pending: int

    @property
    def decided(self) -> int:
        return self.succeeded + self.failed + self.abandoned

    @property
    def success_rate(self) -> float | None:
        """Percent, for display and charts only."""
        return round(100 * self.succeeded / self.decided, 1) if self.decided else None


def _week_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _bucket_of(day_text: str, grain: Grain) -> date:
    day = date.fromisoformat(day_text)
    return day if grain is Grain.DAY else _week_of(day)


def _period(grain: Grain) -> str:
    """The summary read's date column for ``grain`` (weeks are added up in the database)."""
    return "day" if grain is Grain.DAY else "week"


def _days(period: DateRange) -> tuple[str, str]:
    """The summary days ``[first, before)`` of ``period``."""
    return day_of(period.first), day_of(period.last + timedelta(days=1))


def success_rate_series(
    session: Session, *, operator: Operator, period: DateRange, grain: Grain = Grain.DAY,
) -> list[RatePoint]:
    """Attempts and outcomes per bucket and method (``oauth`` / ``account_link``).

    Read from the per-day summary (issue 22): about one row per day, method and outcome.
    """
    authorize(operator, Action.VIEW_METRICS, session=session)
    return rates_from(read_many(session, [rates_ask(period, grain)])["rates"], grain)


def rates_ask(period: DateRange, grain: Grain) -> Ask:
    """The summary read behind :func:`success_rate_series` (labelled ``rates``)."""
    return Ask("rates", "attempts", *_days(period), group=(_period(grain), "k1", "k2"))


def rates_from(rows: list[SummaryRow], grain: Grain) -> list[RatePoint]:
    totals: dict[tuple[date, str], dict[str, int]] = {}
    for row in rows:
        per = totals.setdefault((_bucket_of(row.day, grain), row.k1), {})
        per[row.k2] = per.get(row.k2, 0) + row.n
    return [RatePoint(bucket, method, sum(per.values()),
                      per.get(AttemptOutcome.SUCCEEDED.value, 0),
                      per.get(AttemptOutcome.FAILED.value, 0),
                      per.get(AttemptOutcome.ABANDONED.value, 0),
                      per.get(AttemptOutcome.PENDING.value, 0))
            for (bucket, method), per in sorted(totals.items())]


def decided_attempts(session: Session, *, operator: Operator, period: DateRange) -> int:
    """Attempts started in the range that have an outcome (succeeded, failed or abandoned):
    how the page picks its default grain, a few summary rows instead of a whole series."""
    authorize(operator, Action.VIEW_METRICS, session=session)
    decided = (AttemptOutcome.SUCCEEDED.value, AttemptOutcome.FAILED.value,
               AttemptOutcome.ABANDONED.value)
    first, before = _days(period)
    return sum(row.n for row in read(session, "attempts", group=("k2",), where={"k2": decided},
                                     first_day=first, before_day=before))


# ---- funnel ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunnelStage:
    stage: str
    freelancers: int
    share_of_issued: float | None


def funnel(session: Session, *, operator: Operator, period: DateRange) -> list[FunnelStage]:
    """Distinct freelancers at each stage (see the module docstring).

    A range that ends at or after the newest attempt (every range ending today) is read from the
    funnel's summaries, a few rows per day whatever the volume (:mod:`lib.summaries.funnel`);
    an older range from its own attempts, one query.
    """
    authorize(operator, Action.VIEW_METRICS, session=session)
    if funnel_from_summaries(session, period):
        return funnel_from(read_many(session, funnel_asks(period)))
    return funnel_by_scan(session, period)


def funnel_by_scan(session: Session, period: DateRange) -> list[FunnelStage]:
    """The stages from the range's own attempts (a range ending before the newest attempt)."""
    return _stages(_funnel_by_scan(session, period))


def funnel_from_summaries(session: Session, period: DateRange) -> bool:
    """Whether the range ends at or after the newest attempt (every range ending today), so the
    funnel's summaries serve it; one seek of ix_connection_attempts_started_at."""
    newest = session.scalar(select(func.max(ConnectionAttempt.started_at)))
    return newest is None or newest < period.end


def funnel_asks(period: DateRange) -> list[Ask]:
    """Each stage as a sum over the days from the range's first: a freelancer whose newest
    attempt (came-back attempt, succeeded attempt) started on or after it had one in the range,
    since none started after the range."""
    first = day_of(period.first)
    return [
        Ask("funnel_issued", "funnel_issued", first_day=first, group=()),
        Ask("funnel_returned", "funnel_returned", first_day=first, group=()),
        Ask("funnel_connected", "funnel_connected", first_day=first, group=("k1", "k2")),
    ]


def funnel_from(found: dict[str, list[SummaryRow]]) -> list[FunnelStage]:
    return _stages(funnel_counts(found))


def funnel_counts(found: dict[str, list[SummaryRow]]) -> list[int]:
    """Freelancers at each stage from :func:`funnel_asks`' rows."""
    connected = found["funnel_connected"]
    return [
        sum(row.n for row in found["funnel_issued"]),
        sum(row.n for row in found["funnel_returned"]),
        sum(row.n for row in connected),
        sum(row.n for row in connected if row.k1 == "1"),
        sum(row.n for row in connected if row.k1 == "1" and row.k2 == "1"),
    ]


def _stages(counts: list[int]) -> list[FunnelStage]:
    issued = counts[0]
    return [
        FunnelStage(stage, n, round(100 * n / issued, 1) if issued else None)
        for stage, n in zip(FUNNEL_STAGES, counts, strict=True)
    ]


def _funnel_by_scan(session: Session, period: DateRange) -> list[int]:
    """The range's attempts grouped by freelancer (a past range: its cost follows its length)."""
    outcome = ConnectionAttempt.outcome
    came_back = or_(ConnectionAttempt.returned_at.is_not(None),
                    outcome.in_([AttemptOutcome.SUCCEEDED.value, AttemptOutcome.FAILED.value]))
    per = (
        select(
            ConnectionAttempt.freelancer_id.label("fid"),
            func.max(case((came_back, 1), else_=0)).label("returned"),
            func.max(case((outcome == AttemptOutcome.SUCCEEDED.value, 1), else_=0))
            .label("connected"),
        )
        .where(_in_range(period))
        .group_by(ConnectionAttempt.freelancer_id)
        .subquery()
    )
    # Asked only of verified freelancers, each one seek of (freelancer_id, status): grouping
    # every paid payout (180,000 at scale) to find the paid freelancers cost more than the funnel.
    paid = (
        select(Payout.id)
        .where(Payout.freelancer_id == per.c.fid, Payout.status == PayoutStatus.PAID.value)
        .exists()
    )
    connected = per.c.connected == 1
    verified = and_(
        connected, Freelancer.stripe_account_id.is_not(None),
        ConnectedAccount.transfers_capability == "active",
        ConnectedAccount.payouts_enabled.is_(True), ConnectedAccount.details_submitted.is_(True),
        ConnectedAccount.currently_due_count == 0, ConnectedAccount.past_due_count == 0,
    )
    row = session.execute(
        select(
            func.count(per.c.fid),
            _count_when(or_(per.c.returned == 1, connected)),
            _count_when(connected),
            _count_when(verified),
            _count_when(and_(verified, paid)),
        )
        .select_from(per)
        .join(Freelancer, Freelancer.id == per.c.fid)
        .outerjoin(ConnectedAccount, Freelancer.stripe_account_id == ConnectedAccount.stripe_id)
    ).one()
    return [int(v or 0) for v in row]


# ---- failure reasons -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReasonPoint:
    bucket: date
    reason: str
    attempts: int


def failure_reasons_series(
    session: Session, *, operator: Operator, period: DateRange, grain: Grain = Grain.DAY,
) -> list[ReasonPoint]:
    """Failed and abandoned attempts per bucket and reason (the outcome when none was given)."""
    authorize(operator, Action.VIEW_METRICS, session=session)
    return reasons_from(read_many(session, [reasons_ask(period, grain)])["reasons"], grain)


def reasons_ask(period: DateRange, grain: Grain) -> Ask:
    """The summary read behind :func:`failure_reasons_series` (labelled ``reasons``)."""
    return Ask("reasons", "attempts", *_days(period), group=(_period(grain), "k2", "k3"),
               where={"k2": (AttemptOutcome.FAILED.value, AttemptOutcome.ABANDONED.value)})


def reasons_from(rows: list[SummaryRow], grain: Grain) -> list[ReasonPoint]:
    totals: dict[tuple[date, str], int] = {}
    for row in rows:
        key = (_bucket_of(row.day, grain), row.k3 or row.k2)
        totals[key] = totals.get(key, 0) + row.n
    return [ReasonPoint(bucket, reason, n) for (bucket, reason), n in sorted(totals.items())]


# ---- time to connect -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DurationBucket:
    bucket: str
    order: int
    attempts: int


def time_to_connect(
    session: Session, *, operator: Operator, period: DateRange,
) -> list[DurationBucket]:
    """Succeeded attempts by how long they took from link to connection (every bucket listed).

    The bucket of each attempt is kept by the ``connect_time`` summary (its bounds are
    :data:`DURATION_BUCKETS`'; a test keeps the two equal).
    """
    authorize(operator, Action.VIEW_METRICS, session=session)
    return durations_from(read_many(session, [durations_ask(period)])["durations"])


def durations_ask(period: DateRange) -> Ask:
    """The summary read behind :func:`time_to_connect` (labelled ``durations``)."""
    return Ask("durations", "connect_time", *_days(period), group=("k1",))


def durations_from(rows: list[SummaryRow]) -> list[DurationBucket]:
    counts: dict[int, int] = {}
    for row in rows:
        counts[int(row.k1)] = counts.get(int(row.k1), 0) + row.n
    return [DurationBucket(label, i, counts.get(i, 0))
            for i, (label, _) in enumerate(DURATION_BUCKETS)]
