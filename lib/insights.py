"""The Overview page's KPIs and alerts, each a handful of aggregate queries.

Every figure is one ``COUNT``/``SUM(CASE …)`` over an indexed table, so the Overview costs the
same five queries at 100 or 100,000 accounts. Only the freelancer's *current* account counts
(``freelancers.stripe_account_id``): mirrors of disconnected accounts stay in the table but are
not "connected accounts" any more.

Definitions the page and its tests share:
- *connected*: a freelancer with a current account; the delta is how many of them connected in
  the last 30 days.
- *success rate*: succeeded / (succeeded + failed + abandoned) among attempts started in the
  window; pending attempts have no outcome yet and are left out.
- *payouts this month*: ledger rows ``paid`` created since the 1st (UTC), per currency (never
  added across currencies), against the same days of the previous month.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, literal_column, select, union_all
from sqlalchemy.orm import Session

from lib.account_status import ConnectionStatus
from lib.db import utcnow
from lib.models import (
    AttemptOutcome,
    ConnectedAccount,
    ConnectionAttempt,
    Freelancer,
    Payout,
    PayoutStatus,
    WebhookEvent,
    WebhookStatus,
)
from lib.money import Money, format_money
from lib.roles import Action, Operator, authorize

WINDOW = timedelta(days=30)
DEADLINE_HORIZON = timedelta(days=7)
#: A success-rate drop is reported when it falls by this many percentage points ...
RATE_DROP_POINTS = 10
#: ... and both windows decided at least this many attempts (fewer is noise).
RATE_MIN_ATTEMPTS = 10


@dataclass(frozen=True, slots=True)
class Rate:
    """A ratio of two counts; ``percent`` is for display only (never near money)."""

    numerator: int
    denominator: int

    @property
    def percent(self) -> float | None:
        if not self.denominator:
            return None
        return round(100 * self.numerator / self.denominator, 1)


@dataclass(frozen=True, slots=True)
class CurrencyPayouts:
    currency: str
    this_month_minor: int
    previous_month_minor: int
    count: int

    @property
    def display(self) -> str:
        return format_money(Money(self.this_month_minor, self.currency))

    @property
    def delta_display(self) -> str:
        delta = self.this_month_minor - self.previous_month_minor
        return ("+" if delta >= 0 else "") + format_money(Money(delta, self.currency))


@dataclass(frozen=True, slots=True)
class OverviewKpis:
    as_of: datetime
    connected: int
    connected_last_30_days: int
    active: int
    requirements_due: int
    past_due: int
    deadlines_next_7_days: int
    payouts_this_month: list[CurrencyPayouts] = field(default_factory=list)
    success_rate: Rate = Rate(0, 0)
    previous_success_rate: Rate = Rate(0, 0)
    webhook_failures: int = 0
    unknown_payouts: int = 0

    @property
    def active_share(self) -> Rate:
        return Rate(self.active, self.connected)

    @property
    def success_rate_delta_points(self) -> float | None:
        now, before = self.success_rate.percent, self.previous_success_rate.percent
        if now is None or before is None:
            return None
        return round(now - before, 1)


@dataclass(frozen=True, slots=True)
class Alert:
    level: str  # "error" or "warning"
    message: str


def _sum_when(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _account_counts(session: Session, now: datetime) -> tuple[int, int, int, int, int, int]:
    connected = Freelancer.stripe_account_id.is_not(None)
    row = session.execute(
        select(
            func.count(Freelancer.id),
            _sum_when(Freelancer.connected_at >= now - WINDOW),
            _sum_when(ConnectedAccount.status == ConnectionStatus.ACTIVE.value),
            _sum_when(ConnectedAccount.currently_due_count > 0),
            _sum_when(ConnectedAccount.past_due_count > 0),
            _sum_when(and_(ConnectedAccount.current_deadline >= now,
                           ConnectedAccount.current_deadline < now + DEADLINE_HORIZON)),
        )
        .select_from(Freelancer)
        .outerjoin(ConnectedAccount, Freelancer.stripe_account_id == ConnectedAccount.stripe_id)
        .where(connected)
    ).one()
    total, recent, active, due, past_due, deadlines = (int(v or 0) for v in row)
    return total, recent, active, due, past_due, deadlines


_DECIDED = (AttemptOutcome.SUCCEEDED.value, AttemptOutcome.FAILED.value,
            AttemptOutcome.ABANDONED.value)


def _outcomes_between(window: int, start: datetime, end: datetime) -> Select[Any]:
    """Decided attempts per outcome started in [start, end), tagged with ``window``.

    Outcome first, then the range: each count is a range of the (outcome, started_at) index,
    read without evaluating an expression per attempt (200,000 of them in 60 days at scale).
    """
    return (
        select(literal_column(str(int(window))).label("window"), ConnectionAttempt.outcome,
               func.count())
        .where(ConnectionAttempt.outcome.in_(_DECIDED), ConnectionAttempt.started_at >= start,
               ConnectionAttempt.started_at < end)
        .group_by(ConnectionAttempt.outcome)
    )


def _success_rates(session: Session, now: datetime) -> tuple[Rate, Rate]:
    counts = {(1, outcome): 0 for outcome in _DECIDED} | {(0, o): 0 for o in _DECIDED}
    rows = session.execute(union_all(_outcomes_between(1, now - WINDOW, now),
                                     _outcomes_between(0, now - 2 * WINDOW, now - WINDOW)))
    for window, outcome, count in rows:
        counts[(int(window), str(outcome))] = int(count)

    def rate(window: int) -> Rate:
        return Rate(counts[(window, AttemptOutcome.SUCCEEDED.value)],
                    sum(counts[(window, outcome)] for outcome in _DECIDED))

    return rate(1), rate(0)


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _previous_month_same_point(now: datetime) -> tuple[datetime, datetime]:
    start = _month_start(now)
    previous_start = _month_start(start - timedelta(days=1))
    elapsed = now - start
    previous_end = min(previous_start + elapsed, start)
    return previous_start, previous_end


def _payouts(session: Session, now: datetime) -> list[CurrencyPayouts]:
    start = _month_start(now)
    previous_start, previous_end = _previous_month_same_point(now)
    this_month = Payout.created_at >= start
    before = and_(Payout.created_at >= previous_start, Payout.created_at < previous_end)
    rows = session.execute(
        select(
            Payout.currency,
            func.coalesce(func.sum(case((this_month, Payout.amount_minor), else_=0)), 0),
            func.coalesce(func.sum(case((before, Payout.amount_minor), else_=0)), 0),
            _sum_when(this_month),
        )
        .where(Payout.status == PayoutStatus.PAID.value, Payout.created_at >= previous_start,
               Payout.created_at <= now)
        .group_by(Payout.currency).order_by(Payout.currency)
    )
    return [CurrencyPayouts(currency=c, this_month_minor=int(a), previous_month_minor=int(b),
                            count=int(n)) for c, a, b, n in rows]


def overview_kpis(
    session: Session, *, operator: Operator, now: datetime | None = None
) -> OverviewKpis:
    """Every KPI tile of the Overview, as of ``now`` (UTC)."""
    authorize(operator, Action.VIEW_OVERVIEW, session=session)
    moment = now or utcnow()
    connected, recent, active, due, past_due, deadlines = _account_counts(session, moment)
    rate, previous = _success_rates(session, moment)
    webhook_failures = session.scalar(
        select(func.count(WebhookEvent.id)).where(
            WebhookEvent.status == WebhookStatus.FAILED.value)) or 0
    unknown = session.scalar(
        select(func.count(Payout.id)).where(Payout.status == PayoutStatus.UNKNOWN.value)) or 0
    return OverviewKpis(
        as_of=moment, connected=connected, connected_last_30_days=recent, active=active,
        requirements_due=due, past_due=past_due, deadlines_next_7_days=deadlines,
        payouts_this_month=_payouts(session, moment), success_rate=rate,
        previous_success_rate=previous, webhook_failures=int(webhook_failures),
        unknown_payouts=int(unknown),
    )


def alerts_for(kpis: OverviewKpis) -> list[Alert]:
    """The banners the Overview shows, most serious first (a pure function of the KPIs)."""
    alerts: list[Alert] = []
    if kpis.unknown_payouts:
        alerts.append(Alert("error", (
            f"{kpis.unknown_payouts} payout(s) have an unknown outcome at Stripe: run "
            "Reconciliation before paying these freelancers again.")))
    if kpis.past_due:
        alerts.append(Alert("error", (
            f"{kpis.past_due} connected account(s) have past-due requirements: Stripe has "
            "stopped or will stop their payouts. See Requirements due.")))
    if kpis.webhook_failures:
        alerts.append(Alert("warning", (
            f"{kpis.webhook_failures} webhook event(s) failed to process: the account mirror may "
            "be stale. Replay them on Webhooks and sync.")))
    drop = kpis.success_rate_delta_points
    if (drop is not None and drop <= -RATE_DROP_POINTS
            and kpis.success_rate.denominator >= RATE_MIN_ATTEMPTS
            and kpis.previous_success_rate.denominator >= RATE_MIN_ATTEMPTS):
        alerts.append(Alert("warning", (
            f"Connection success rate fell to {kpis.success_rate.percent}% over the last 30 "
            f"days, from {kpis.previous_success_rate.percent}% the 30 days before "
            f"({drop:+} points). See Connection metrics.")))
    return alerts
