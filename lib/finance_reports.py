"""The finance reports behind ``notebooks/finance.ipynb``: plain rows, read only, role checked.

- :func:`payouts_by_month` — money paid to freelancers per month and currency, net of reversals.
  A payout counts in the month it was created (the ledger's month, as on the Overview); a
  reversal in the month it completed (when the money came back). Currencies are never added.
- :func:`connect_durations` — how long each freelancer took from link to connection.
- :func:`requirement_ageing` — how long each requirement Stripe asks for now has been open,
  from the requirement history (``requirement_changes``): since the last time it was added.
- :func:`bank_failure_rates` — freelancers' bank payouts settled per month and how many failed.

Every function needs ``Action.VIEW_REPORTS`` and only reads: a notebook runs them in a session
it never commits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Result, select
from sqlalchemy.orm import Session

from lib.account_status import requirement_label
from lib.connection_metrics import DateRange
from lib.connection_timing import durations_by_week
from lib.db import utcnow
from lib.models import (
    BankPayout,
    BankPayoutStatus,
    ConnectedAccount,
    Freelancer,
    Payout,
    PayoutReversal,
    PayoutStatus,
    RequirementChange,
    RequirementCode,
)
from lib.money import SUPPORTED_CURRENCIES, minor_to_display
from lib.payouts.reversal import SUCCEEDED as REVERSAL_SUCCEEDED
from lib.requirements_queries import CATEGORIES
from lib.roles import Action, Operator, authorize

#: Ledger states whose money reached the freelancer (a reversed payout was paid first).
_PAID = (PayoutStatus.PAID.value, PayoutStatus.REVERSED.value)
#: Reversal states whose money came back.
_REVERSED = (REVERSAL_SUCCEEDED,)
AGE_BANDS: tuple[tuple[str, int | None], ...] = (
    ("under 7 days", 7), ("7–30 days", 30), ("30–90 days", 90), ("over 90 days", None))


def _month(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def _major(amount_minor: int, currency: str) -> str:
    if currency in SUPPORTED_CURRENCIES:
        return minor_to_display(amount_minor, currency)
    return str(amount_minor)


@dataclass(frozen=True, slots=True)
class MonthlyPayouts:
    month: str
    currency: str
    payouts: int
    paid_minor: int
    reversed_minor: int

    @property
    def net_minor(self) -> int:
        return self.paid_minor - self.reversed_minor

    def row(self) -> dict[str, Any]:
        """For a DataFrame: amounts as exact minor units and as display text (never floats)."""
        return {"month": self.month, "currency": self.currency.upper(), "payouts": self.payouts,
                "paid_minor": self.paid_minor, "reversed_minor": self.reversed_minor,
                "net_minor": self.net_minor,
                "net": _major(self.net_minor, self.currency)}


def payouts_by_month(
    session: Session, *, operator: Operator, since: datetime | None = None,
) -> list[MonthlyPayouts]:
    """Paid, reversed and net amounts per month and currency (oldest month first)."""
    authorize(operator, Action.VIEW_REPORTS, session=session)
    paid: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    statement = select(Payout.created_at, Payout.currency, Payout.amount_minor).where(
        Payout.status.in_(_PAID))
    if since is not None:
        statement = statement.where(Payout.created_at >= since)
    for created, currency, amount in session.execute(statement):
        entry = paid[(_month(created), currency)]
        entry[0] += 1
        entry[1] += int(amount)
    reversals = select(PayoutReversal.completed_at, PayoutReversal.created_at, Payout.currency,
                       PayoutReversal.amount_minor).join(
        Payout, Payout.id == PayoutReversal.payout_id).where(
        PayoutReversal.status.in_(_REVERSED))
    for completed, created, currency, amount in session.execute(reversals):
        moment = completed or created
        if since is not None and moment < since:
            continue
        paid[(_month(moment), currency)][2] += int(amount)
    return [MonthlyPayouts(month, currency, n, amount, back)
            for (month, currency), (n, amount, back) in sorted(paid.items())]


def connect_durations(
    session: Session, *, operator: Operator, period: DateRange,
) -> list[dict[str, Any]]:
    """One row per succeeded attempt started in ``period``: its week and minutes to connect."""
    authorize(operator, Action.VIEW_REPORTS, session=session)
    return [{"week": week, "minutes": round(seconds / 60, 1)}
            for week, seconds in durations_by_week(session, period=period)]


@dataclass(frozen=True, slots=True)
class OpenRequirement:
    freelancer_id: int
    freelancer: str
    list_name: str
    requirement: str
    code: str
    #: When it was last added (None: asked before the history was kept).
    open_since: datetime | None
    age_days: int | None

    @property
    def band(self) -> str:
        if self.age_days is None:
            return "unknown (before history)"
        for name, limit in AGE_BANDS:
            if limit is None or self.age_days < limit:
                return name
        return AGE_BANDS[-1][0]

    def row(self) -> dict[str, Any]:
        return {"freelancer": self.freelancer, "list": self.list_name,
                "requirement": self.requirement, "code": self.code,
                "open_since": self.open_since, "age_days": self.age_days, "band": self.band}


def requirement_ageing(
    session: Session, *, operator: Operator, now: datetime | None = None,
) -> list[OpenRequirement]:
    """Every requirement asked now (``requirement_codes``), with how long it has been open."""
    authorize(operator, Action.VIEW_REPORTS, session=session)
    moment = now or utcnow()
    names = dict(CATEGORIES)
    open_codes = session.execute(
        select(RequirementCode.account_id, RequirementCode.bucket, RequirementCode.code,
               Freelancer.id, Freelancer.name)
        .join(ConnectedAccount, ConnectedAccount.id == RequirementCode.account_id)
        .join(Freelancer, Freelancer.stripe_account_id == ConnectedAccount.stripe_id)
    ).all()
    accounts = sorted({row[0] for row in open_codes})
    added_at: dict[tuple[int, str, str], datetime | None] = {}
    for start in range(0, len(accounts), 500):
        chunk = accounts[start:start + 500]
        # JSON columns (dict[str, Any]) defeat select()'s typed overloads: the row, spelled out.
        changes: Result[int, datetime, dict[str, Any], dict[str, Any]] = session.execute(
            select(RequirementChange.account_id, RequirementChange.observed_at,
                   RequirementChange.added, RequirementChange.removed)
            .where(RequirementChange.account_id.in_(chunk))
            .order_by(RequirementChange.observed_at, RequirementChange.id))
        for account_id, observed, added, removed in changes:
            for bucket, codes in (removed or {}).items():
                for code in codes:
                    added_at[(account_id, bucket, str(code))] = None
            for bucket, codes in (added or {}).items():
                for code in codes:
                    added_at[(account_id, bucket, str(code))] = observed
    found = []
    for account_id, bucket, code, freelancer_id, name in open_codes:
        since = added_at.get((account_id, bucket, code))
        found.append(OpenRequirement(
            freelancer_id=freelancer_id, freelancer=name, list_name=names.get(bucket, bucket),
            requirement=requirement_label(code), code=code, open_since=since,
            age_days=(moment - since).days if since is not None else None))
    return sorted(found, key=lambda r: (-(r.age_days or -1), r.freelancer, r.code))


@dataclass(frozen=True, slots=True)
class FailureRate:
    month: str
    settled: int
    failed: int

    @property
    def rate(self) -> float | None:
        """Percent, for display and charts only (never near money)."""
        return round(100 * self.failed / self.settled, 1) if self.settled else None

    def row(self) -> dict[str, Any]:
        return {"month": self.month, "settled": self.settled, "failed": self.failed,
                "failure_rate": self.rate}


def bank_failure_rates(
    session: Session, *, operator: Operator, since: datetime | None = None,
) -> list[FailureRate]:
    """Freelancers' bank payouts that reached an end per month (by when), and how many failed."""
    authorize(operator, Action.VIEW_REPORTS, session=session)
    statement = select(BankPayout.settled_at, BankPayout.status).where(
        BankPayout.status.in_([BankPayoutStatus.PAID.value, BankPayoutStatus.FAILED.value]),
        BankPayout.settled_at.is_not(None))
    if since is not None:
        statement = statement.where(BankPayout.settled_at >= since)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for settled, status in session.execute(statement):
        assert settled is not None  # the WHERE selects settled payouts only
        entry = counts[_month(settled)]
        entry[0] += 1
        entry[1] += status == BankPayoutStatus.FAILED.value
    return [FailureRate(month, n, failed) for month, (n, failed) in sorted(counts.items())]


def last_days(days: int) -> DateRange:
    """The ``days`` UTC days up to today (a period for :func:`connect_durations`)."""
    return DateRange.last_days(days, today=date.today())
