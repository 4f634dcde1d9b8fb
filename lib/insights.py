"""The Overview page's KPIs and alerts, each a handful of aggregate queries.

Every figure is read from the summaries kept on write (``lib.summaries``, issue 22): whole
days from the summary rows; a window's partial days as whole hours from the hourly kinds
(attempts, connections, deadlines) plus at most half an hour of rows at each end, counted from
the tables' indexes (payouts: the partial days' rows). So
the Overview costs the same few statements, reading about the same number of rows, at 1,000 or
1,000,000 accounts. Only the freelancer's *current* account counts
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
from decimal import Decimal
from typing import Any

from sqlalchemy import Result, Select, func, literal_column, select, text, union_all
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
    WebhookStatus,
)
from lib.money import Money, format_money
from lib.roles import Action, Operator, authorize
from lib.summaries.keys import day_of
from lib.summaries.ranges import Pieces, Split, cheapest, count_many, pieces, split
from lib.summaries.store import Ask, SummaryRow, read_many

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


def _count_between(column: Any, start: datetime, end: datetime, *where: Any) -> Select[Any]:
    return select(func.count()).where(column >= start, column < end, *where)


class _EdgeCounts:
    """The partial days the windows need, each counted once from its table's index.

    A part is named by what it counts and its range, so two windows sharing an edge (the 30
    days before "the last 30 days" end where those start) count it once.
    """

    def __init__(self) -> None:
        self._parts: dict[tuple[str, datetime, datetime], tuple[str, Select[Any]]] = {}
        self.found: dict[tuple[str, datetime, datetime], int] = {}

    def want(self, family: str, window: Pieces, column: Any, *where: Any,
             source: Any = None) -> None:
        for _, start, end in window.rows:
            if (family, start, end) not in self._parts:
                statement = _count_between(column, start, end, *where)
                if source is not None:
                    statement = statement.select_from(source)
                self._parts[(family, start, end)] = (f"e{len(self._parts)}", statement)

    def count(self, session: Session) -> _EdgeCounts:
        """Every part wanted, in one statement."""
        if session.get_bind().dialect.name == "postgresql":
            # A dozen small index ranges: PostgreSQL planned them as a parallel append, whose
            # workers cost more to start than the ranges to read (28 -> 21 ms at 1M). For this
            # read's transaction only.
            session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
        counted = count_many(session, list(self._parts.values()))
        self.found = {key: counted[label] for key, (label, _) in self._parts.items()}
        return self

    def total(self, family: str, window: Pieces) -> int:
        """What ``window``'s row pieces add and take away."""
        return sum(sign * self.found[(family, s, e)] for sign, s, e in window.rows)


def _in_days(rows: list[SummaryRow], split: Split) -> list[SummaryRow]:
    """The summary rows of ``split``'s whole days (and of the days it reads whole and takes a
    part back from)."""
    first, before, whole = split.first_day, split.before_day, split.whole_days
    return [r for r in rows
            if (first is not None and before is not None and first <= r.day < before)
            or r.day in whole]


_DECIDED = (AttemptOutcome.SUCCEEDED.value, AttemptOutcome.FAILED.value,
            AttemptOutcome.ABANDONED.value)


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _previous_month_same_point(now: datetime) -> tuple[datetime, datetime]:
    start = _month_start(now)
    previous_start = _month_start(start - timedelta(days=1))
    elapsed = now - start
    previous_end = min(previous_start + elapsed, start)
    return previous_start, previous_end


@dataclass(frozen=True, slots=True)
class _Windows:
    """The Overview's time windows, each split into summary days and partial-day edges."""

    # Whole days, whole hours of the partial days, and at most half an hour of rows at each
    # end (the tables with a kind kept per hour too: attempts, connections, deadlines).
    recent: Pieces         # connected in the last 30 days
    rate_now: Pieces       # attempts started in the last 30 days
    rate_before: Pieces    # ... and in the 30 days before
    deadlines: Pieces      # deadlines in the next 7 days
    month: Split           # payouts created this month, up to now (inclusive)
    previous: Split        # ... and in the same days of last month

    @classmethod
    def at(cls, now: datetime) -> _Windows:
        previous_start, previous_end = _previous_month_same_point(now)
        def past(start: datetime, end: datetime) -> Split:
            # Columns stamped when the row happens: a partial day may be cheaper as its whole
            # day less the rest (today's rest, after now, is empty). Deadlines lie ahead.
            return cheapest(split(start, end), now=now)

        return cls(
            recent=pieces(now - WINDOW, now, now=now),
            rate_now=pieces(now - WINDOW, now, now=now),
            rate_before=pieces(now - 2 * WINDOW, now - WINDOW, now=now),
            # Deadlines lie ahead, spread over the day: the shorter piece is the cheaper one.
            deadlines=pieces(now, now + DEADLINE_HORIZON),
            # created_at <= now: the end is just after now.
            month=past(_month_start(now), now + timedelta(microseconds=1)),
            previous=past(previous_start, previous_end),
        )


def _summaries(session: Session, windows: _Windows, now: datetime,
               hour_reads: dict[tuple[str, str, str], str]) -> dict[str, list[SummaryRow]]:
    """Every summary row the Overview needs, in one statement."""
    previous_start = _month_start(_month_start(now) - timedelta(days=1))
    return read_many(session, [
        Ask("accounts", "accounts", group=("k1", "k2", "k3")),
        Ask("connected", "connected", group=("k1",)),      # every day: the total
        Ask("connected_recent", "connected", first_day=day_of(now - WINDOW), group=("day",)),
        Ask("deadlines", "deadlines", first_day=day_of(now), group=("day",),
            before_day=day_of(now + DEADLINE_HORIZON + timedelta(days=1))),
        Ask("attempts", "attempts", first_day=day_of(now - 2 * WINDOW), group=("day", "k2"),
            where={"k2": _DECIDED}),
        # The whole hours of the partial days: a read per range of hours (an index range each;
        # a list of hour keys was planned as a scan of the kind's every hour).
        *(Ask(label, kind, first_day=first, before_day=before, group=("day", "k1"),
              where={"k1": _DECIDED} if kind == "attempt_hours" else None)
          for (kind, first, before), label in hour_reads.items()),
        Ask("events", "events", group=("k2",),
            where={"k2": (WebhookStatus.FAILED.value,)}),
        Ask("payouts", "payouts", first_day=day_of(previous_start), group=("day", "k1"),
            where={"k2": (PayoutStatus.PAID.value,)}),
        Ask("unknown", "payouts", group=("k2",), where={"k2": (PayoutStatus.UNKNOWN.value,)}),
    ])


def _hour_windows(windows: _Windows) -> dict[str, tuple[Pieces, ...]]:
    """Each hourly kind and the windows whose partial days it serves."""
    return {"attempt_hours": (windows.rate_now, windows.rate_before),
            "connected_hours": (windows.recent,), "deadline_hours": (windows.deadlines,)}


def _hour_reads(windows: _Windows) -> dict[tuple[str, str, str], str]:
    """A read label for each (kind, range of whole hours) to read: per kind, the windows'
    ranges merged where they meet or overlap (a range of whole hours and the hour read whole
    next to it), so the reads are disjoint and fewer."""
    reads: dict[tuple[str, str, str], str] = {}
    for kind, served in _hour_windows(windows).items():
        merged: list[list[str]] = []
        for first, before in sorted({(first, before) for window in served
                                     for _, first, before in window.hours}):
            if merged and first <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], before)
            else:
                merged.append([first, before])
        for first, before in merged:
            reads[(kind, first, before)] = f"hours{len(reads)}"
    return reads


def _hour_rows(rows: dict[str, list[SummaryRow]], hour_reads: dict[tuple[str, str, str], str],
               kind: str) -> list[SummaryRow]:
    """The rows of ``kind``'s hour reads (disjoint: each hour's row once)."""
    return [row for (read_kind, _, _), label in hour_reads.items()
            if read_kind == kind for row in rows[label]]


def _whole(window: Pieces, days: list[SummaryRow], hours: list[SummaryRow]) -> int:
    """What ``window``'s whole days (of the rows ``days``, a row per day and key) and whole
    hours (of ``hours``, a row per hour and key) count."""
    return (sum(sign * r.n for sign, first, before in window.days for r in days
                if first <= r.day < before)
            + sum(sign * r.n for sign, first, before in window.hours for r in hours
                  if first <= r.day < before))


def _edge_counts(session: Session, windows: _Windows) -> _EdgeCounts:
    """The partial days at the windows' ends, counted from the tables' indexes, in one statement."""
    current = Freelancer.stripe_account_id.is_not(None)
    owned = Freelancer.__table__.join(
        ConnectedAccount.__table__, Freelancer.stripe_account_id == ConnectedAccount.stripe_id)
    edges = _EdgeCounts()
    edges.want("connected", windows.recent, Freelancer.connected_at, current)
    edges.want("deadlines", windows.deadlines, ConnectedAccount.current_deadline, source=owned)
    for window in (windows.rate_now, windows.rate_before):
        for outcome in _DECIDED:
            edges.want(outcome, window, ConnectionAttempt.started_at,
                       ConnectionAttempt.outcome == outcome)
    return edges.count(session)


def _payout_edges(session: Session, windows: _Windows) -> dict[tuple[str, str], int]:
    """Paid amounts per currency over the payout windows' partial days (one statement)."""
    parts: list[Select[*tuple[Any, ...]]] = []
    for label, window in (("month", windows.month), ("previous", windows.previous)):
        ranges = [(1, start, end) for start, end in window.edges]
        ranges += [(-1, start, end) for _, start, end in window.taken_back]
        for sign, start, end in ranges:
            parts.append(
                select(literal_column(f"'{label}'"), Payout.currency,
                       sign * func.coalesce(func.sum(Payout.amount_minor), 0),
                       sign * func.count())
                .where(Payout.status == PayoutStatus.PAID.value, Payout.created_at >= start,
                       Payout.created_at < end)
                .group_by(Payout.currency))
    found: dict[tuple[str, str], int] = {}
    counts: dict[str, int] = {}
    if parts:
        statement = union_all(*parts) if len(parts) > 1 else parts[0]
        # label, currency, the paid total (NUMERIC on PostgreSQL), the number of payouts.
        totals: Result[str, str, int | Decimal, int] = session.execute(statement)
        for label, currency, amount, count in totals:
            found[(str(label), str(currency))] = found.get((str(label), str(currency)), 0) \
                + int(amount)
            if label == "month":
                counts[str(currency)] = counts.get(str(currency), 0) + int(count)
    found.update({("count", c): n for c, n in counts.items()})
    return found


def _payouts(rows: list[SummaryRow], edges: dict[tuple[str, str], int],
             windows: _Windows) -> list[CurrencyPayouts]:
    this_month: dict[str, int] = {}
    before: dict[str, int] = {}
    count: dict[str, int] = {}
    for row in _in_days(rows, windows.month):
        this_month[row.k1] = this_month.get(row.k1, 0) + row.amount
        count[row.k1] = count.get(row.k1, 0) + row.n
    for row in _in_days(rows, windows.previous):
        before[row.k1] = before.get(row.k1, 0) + row.amount
    for (label, currency), value in edges.items():
        target = {"month": this_month, "previous": before, "count": count}[label]
        target[currency] = target.get(currency, 0) + value
    # A day read whole and then taken back to nothing leaves a currency at zero: not shown.
    currencies = sorted(c for c in set(this_month) | set(before)
                        if this_month.get(c) or before.get(c) or count.get(c))
    return [CurrencyPayouts(currency=c, this_month_minor=this_month.get(c, 0),
                            previous_month_minor=before.get(c, 0), count=count.get(c, 0))
            for c in currencies]


def _rate(rows: dict[str, list[SummaryRow]], hours: list[SummaryRow], window: Pieces,
          edges: _EdgeCounts) -> Rate:
    per: dict[str, int] = {}
    for outcome in _DECIDED:
        # Days are keyed (method, outcome, reason), hours (outcome): k2, then k1.
        per[outcome] = _whole(window, [r for r in rows["attempts"] if r.k2 == outcome],
                              [r for r in hours if r.k1 == outcome])
    for outcome in _DECIDED:
        per[outcome] += edges.total(outcome, window)
    return Rate(per[AttemptOutcome.SUCCEEDED.value], sum(per[o] for o in _DECIDED))


def overview_kpis(
    session: Session, *, operator: Operator, now: datetime | None = None
) -> OverviewKpis:
    """Every KPI tile of the Overview, as of ``now`` (UTC).

    Whole days come from the summaries (issue 22) and the partial days at each window's ends
    from the tables' indexes: three queries (and on PostgreSQL a SET LOCAL), the same at 1,000
    or 1,000,000 accounts.
    """
    authorize(operator, Action.VIEW_OVERVIEW, session=session)
    moment = now or utcnow()
    windows = _Windows.at(moment)
    hour_reads = _hour_reads(windows)
    rows = _summaries(session, windows, moment, hour_reads)
    edges = _edge_counts(session, windows)
    accounts = rows["accounts"]
    connected_rows = rows["connected"]
    attempt_hours = _hour_rows(rows, hour_reads, "attempt_hours")
    return OverviewKpis(
        as_of=moment,
        connected=sum(r.n for r in connected_rows),
        connected_last_30_days=_whole(windows.recent, rows["connected_recent"],
                                      _hour_rows(rows, hour_reads, "connected_hours"))
        + edges.total("connected", windows.recent),
        active=sum(r.n for r in accounts if r.k1 == ConnectionStatus.ACTIVE.value),
        requirements_due=sum(r.n for r in accounts if r.k2 == "1"),
        past_due=sum(r.n for r in accounts if r.k3 == "1"),
        deadlines_next_7_days=_whole(windows.deadlines, rows["deadlines"],
                                     _hour_rows(rows, hour_reads, "deadline_hours"))
        + edges.total("deadlines", windows.deadlines),
        payouts_this_month=_payouts(rows["payouts"], _payout_edges(session, windows), windows),
        success_rate=_rate(rows, attempt_hours, windows.rate_now, edges),
        previous_success_rate=_rate(rows, attempt_hours, windows.rate_before, edges),
        webhook_failures=sum(r.n for r in rows["events"]),
        unknown_payouts=sum(r.n for r in rows["unknown"]),
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
