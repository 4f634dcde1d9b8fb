"""Connection metrics for a date range: success rate over time, the funnel, failure reasons and
time to connect, each one ``GROUP BY`` query over ``connection_attempts`` (indexed on
``started_at`` and ``outcome``).

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

from sqlalchemy import ColumnElement, Float, Select, and_, case, cast, func, or_, select
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


def _seconds_between(start: Any, end: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * cast(86_400, Float)


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


def _bucketed(session: Session, grain: Grain, period: DateRange) -> Select[Any]:
    """Attempts started in the period with their bucket, for an outer GROUP BY."""
    return select(
        date_bucket(ConnectionAttempt.started_at, grain, _dialect(session)).label("bucket"),
        ConnectionAttempt.method,
        ConnectionAttempt.outcome,
        func.coalesce(ConnectionAttempt.failure_reason, ConnectionAttempt.outcome).label("reason"),
    ).where(_in_range(period))


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


def success_rate_series(
    session: Session, *, operator: Operator, period: DateRange, grain: Grain = Grain.DAY,
) -> list[RatePoint]:
    """Attempts and outcomes per bucket and method (``oauth`` / ``account_link``)."""
    authorize(operator, Action.VIEW_METRICS, session=session)
    outcome = _bucketed(session, grain, period).subquery()
    rows = session.execute(
        select(
            outcome.c.bucket, outcome.c.method, func.count(),
            _count_when(outcome.c.outcome == AttemptOutcome.SUCCEEDED.value),
            _count_when(outcome.c.outcome == AttemptOutcome.FAILED.value),
            _count_when(outcome.c.outcome == AttemptOutcome.ABANDONED.value),
            _count_when(outcome.c.outcome == AttemptOutcome.PENDING.value),
        )
        .group_by(outcome.c.bucket, outcome.c.method)
        .order_by(outcome.c.bucket, outcome.c.method)
    )
    return [RatePoint(_as_date(b), str(m), int(n), int(s), int(f), int(a), int(p))
            for b, m, n, s, f, a, p in rows]


# ---- funnel ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunnelStage:
    stage: str
    freelancers: int
    share_of_issued: float | None


def funnel(session: Session, *, operator: Operator, period: DateRange) -> list[FunnelStage]:
    """Distinct freelancers at each stage (see the module docstring), one query."""
    authorize(operator, Action.VIEW_METRICS, session=session)
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
    counts = [int(v or 0) for v in row]
    issued = counts[0]
    return [
        FunnelStage(stage, n, round(100 * n / issued, 1) if issued else None)
        for stage, n in zip(FUNNEL_STAGES, counts, strict=True)
    ]


# ---- failure reasons -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReasonPoint:
    bucket: date
    reason: str
    attempts: int


def failure_reasons_series(
    session: Session, *, operator: Operator, period: DateRange, grain: Grain = Grain.DAY,
) -> list[ReasonPoint]:
    """Failed and abandoned attempts per bucket and reason."""
    authorize(operator, Action.VIEW_METRICS, session=session)
    failures = _bucketed(session, grain, period).where(
        ConnectionAttempt.outcome.in_([AttemptOutcome.FAILED.value,
                                       AttemptOutcome.ABANDONED.value])).subquery()
    rows = session.execute(
        select(failures.c.bucket, failures.c.reason, func.count())
        .group_by(failures.c.bucket, failures.c.reason)
        .order_by(failures.c.bucket, failures.c.reason)
    )
    return [ReasonPoint(_as_date(b), str(r), int(n)) for b, r, n in rows]


# ---- time to connect -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DurationBucket:
    bucket: str
    order: int
    attempts: int


def time_to_connect(
    session: Session, *, operator: Operator, period: DateRange,
) -> list[DurationBucket]:
    """Succeeded attempts by how long they took from link to connection (every bucket listed)."""
    authorize(operator, Action.VIEW_METRICS, session=session)
    seconds = _seconds_between(ConnectionAttempt.started_at, ConnectionAttempt.finished_at,
                               _dialect(session))
    whens = [(seconds < limit, index) for index, (_, limit) in enumerate(DURATION_BUCKETS)
             if limit is not None]
    durations = (
        select(case(*whens, else_=len(DURATION_BUCKETS) - 1).label("bucket_index"))
        .where(_in_range(period),
               ConnectionAttempt.outcome == AttemptOutcome.SUCCEEDED.value,
               ConnectionAttempt.finished_at.is_not(None))
        .subquery()
    )
    # Grouping on the subquery's column: PostgreSQL cannot match a GROUP BY expression whose
    # constants are separate bind parameters.
    rows = session.execute(
        select(durations.c.bucket_index, func.count()).group_by(durations.c.bucket_index))
    counts = {int(i): int(n) for i, n in rows}
    return [DurationBucket(label, i, counts.get(i, 0))
            for i, (label, _) in enumerate(DURATION_BUCKETS)]
